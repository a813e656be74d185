"""Iterations made before answers were drawn from per-instruction seeds keep the seeds they were drawn with.

`Iteration.config` holds only what differs from the defaults (webapp/iterations/config.py), and the default
became "per_instruction": without this, resuming an old iteration's generate stage would draw new seeds and
add candidates beside the ones it has.
"""

from django.db import migrations


def keep_shared_seeds(apps, schema_editor):
    Iteration = apps.get_model("webapp", "Iteration")
    for iteration in Iteration.objects.all().only("pk", "config"):
        config = dict(iteration.config or {})
        if "seeding" not in config:
            config["seeding"] = "shared"
            Iteration.objects.filter(pk=iteration.pk).update(config=config)


class Migration(migrations.Migration):
    dependencies = [("webapp", "0019_import_heartbeat")]
    operations = [migrations.RunPython(keep_shared_seeds, migrations.RunPython.noop)]
