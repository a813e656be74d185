from django.db import migrations, models


class Migration(migrations.Migration):
    """`Claim.splitter` named what divided the claim, while `Iteration.splitter` names how an iteration divides."""

    dependencies = [("webapp", "0007_iteration_stopped_stage")]

    operations = [
        migrations.RenameField(model_name="claim", old_name="splitter", new_name="divided_by"),
        migrations.AlterField(
            model_name="claim",
            name="divided_by",
            field=models.CharField(
                help_text="What divided the answer into this claim: 'rule' or 'rlaifv:<divide model>'", max_length=500
            ),
        ),
    ]
