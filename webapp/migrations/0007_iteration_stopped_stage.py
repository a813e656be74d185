from django.db import migrations, models


class Migration(migrations.Migration):
    """`failed_status` also recorded cancellations: it is the stage the iteration stopped in."""

    dependencies = [("webapp", "0006_review_iteration")]

    operations = [
        migrations.RenameField(model_name="iteration", old_name="failed_status", new_name="stopped_stage"),
        migrations.AlterField(
            model_name="iteration",
            name="stopped_stage",
            field=models.CharField(
                blank=True,
                help_text="The stage it was in when it failed or was cancelled; resume restarts it",
                max_length=20,
            ),
        ),
    ]
