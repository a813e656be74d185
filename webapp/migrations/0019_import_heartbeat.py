"""InstructionImport.heartbeat_at: an upload's last sign of life, which the stale-work watchdog reads.

An upload made before it was kept shows none since it was uploaded, so a pending one whose message was lost is
re-sent by the watchdog on its next beat.
"""

from django.db import migrations, models


def since_uploaded(apps, schema_editor):
    apps.get_model("webapp", "InstructionImport").objects.update(heartbeat_at=models.F("uploaded_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("webapp", "0018_instruction_source_counts"),
    ]

    operations = [
        migrations.AddField(
            model_name="instructionimport",
            name="heartbeat_at",
            field=models.DateTimeField(
                blank=True,
                help_text="Its last sign of life: sent, started, or its worker's progress or heartbeat",
                null=True,
            ),
        ),
        migrations.RunPython(since_uploaded, migrations.RunPython.noop),
    ]
