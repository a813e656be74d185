"""WithdrawnPair: a pair a review's rebuild removed, kept so the same two answers paired again get their row
(number, exclusion, origin) back, as after an undo."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("webapp", "0025_response_reviewed_standing"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="WithdrawnPair",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("pair_id", models.BigIntegerField(help_text="The id the pair had, and gets back", unique=True)),
                ("excluded", models.BooleanField(default=False)),
                ("origin", models.JSONField(blank=True, null=True)),
                (
                    "chosen",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="webapp.response"
                    ),
                ),
                (
                    "excluded_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "iteration",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="webapp.iteration"
                    ),
                ),
                (
                    "rejected",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="webapp.response"
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("iteration", "chosen", "rejected"), name="withdrawn_pair_unique")
                ],
            },
        ),
    ]
