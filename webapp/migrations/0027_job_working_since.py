"""Job.working_at / working_from: when a run first reported work done, and how far it was, so a running job's
rate leaves out the models it loaded first."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("webapp", "0026_withdrawn_pairs"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="working_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When this run first reported work done: its rate leaves out the time before",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="job",
            name="working_from",
            field=models.PositiveIntegerField(default=0, help_text="Items done when this run first reported"),
        ),
    ]
