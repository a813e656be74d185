"""Review.iteration: the claim's iteration, stored on the review, with an index (reviewer, iteration, claim).

The spot-check queue counts the claims one reviewer decided in an iteration; joining each of their reviews to
its claim and answer made the queue slower the more that reviewer had done. Existing reviews are filled in
from their claims. On SQLite, adding the column rebuilds webapp_review, which drops the trigger of 0005 on
it: it is created again after the rebuild (and before the rebuild when migrating backwards).
"""

from importlib import import_module

import django.db.models.deletion
from django.db import migrations, models

reviewed_trigger = import_module("webapp.migrations.0005_response_reviewed")

_BACKFILL = """UPDATE webapp_review SET iteration_id = (
  SELECT r.iteration_id FROM webapp_claim c JOIN webapp_response r ON r.id = c.response_id
  WHERE c.id = webapp_review.claim_id)"""


def restore_sqlite_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(reviewed_trigger._SQLITE_DROP)
        schema_editor.execute(reviewed_trigger._SQLITE)


class Migration(migrations.Migration):
    dependencies = [("webapp", "0005_response_reviewed")]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, restore_sqlite_trigger),
        migrations.AddField(
            model_name="review",
            name="iteration",
            field=models.ForeignKey(
                null=True,
                editable=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="webapp.iteration",
            ),
        ),
        migrations.RunSQL(_BACKFILL, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="review",
            name="iteration",
            field=models.ForeignKey(
                editable=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="webapp.iteration",
            ),
        ),
        migrations.AddIndex(
            model_name="review",
            index=models.Index(fields=["reviewer", "iteration", "claim"], name="review_reviewer_iteration_idx"),
        ),
        migrations.RunPython(restore_sqlite_trigger, migrations.RunPython.noop),
    ]
