"""The (reviewer, iteration, claim) index of reviews also carries each review's id and what it undoes, so the
spot-check queue's count of a reviewer's standing decisions is an index-only scan on PostgreSQL (other databases
build the index without them)."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("webapp", "0027_job_working_since"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(model_name="review", name="review_reviewer_iteration_idx"),
        migrations.AddIndex(
            model_name="review",
            index=models.Index(
                fields=["reviewer", "iteration", "claim"],
                include=("id", "undoes"),
                name="review_reviewer_iteration_idx",
            ),
        ),
    ]
