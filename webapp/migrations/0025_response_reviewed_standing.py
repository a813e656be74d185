"""Response.reviewed: a claim of the answer has a review still standing, so an undo turns it off again.

0005's trigger set the flag on every review inserted and never cleared it: after a decision and its undo the pair
list said "Reviewed: yes" with no review standing. The trigger now recomputes the flag for the answer whose claim
was reviewed (a decision, or an undo naming one) from its standing reviews: decisions that are not undos and that
no undo names. Existing flags are recomputed the same way.
"""

from django.db import migrations, models

_STANDING = """EXISTS (SELECT 1 FROM webapp_claim c JOIN webapp_review r ON r.claim_id = c.id
    WHERE c.response_id = webapp_response.id AND r.decision <> 'undo'
      AND NOT EXISTS (SELECT 1 FROM webapp_review u WHERE u.undoes_id = r.id))"""
_SET = f"""UPDATE webapp_response SET reviewed = {_STANDING}
  WHERE id = (SELECT response_id FROM webapp_claim WHERE id = NEW.claim_id)"""
_OLD_SET = """UPDATE webapp_response SET reviewed = TRUE
  WHERE id = (SELECT response_id FROM webapp_claim WHERE id = NEW.claim_id) AND NOT reviewed"""

_POSTGRES = """
CREATE OR REPLACE FUNCTION webapp_response_reviewed() RETURNS trigger AS $$
BEGIN
  {};
  RETURN NEW;
END $$ LANGUAGE plpgsql;
"""
_SQLITE = "DROP TRIGGER IF EXISTS webapp_response_reviewed; " + (
    "CREATE TRIGGER webapp_response_reviewed AFTER INSERT ON webapp_review BEGIN {}; END;"
)
_BACKFILL = f"""UPDATE webapp_response SET reviewed = {_STANDING} WHERE reviewed"""


def _install(schema_editor, update: str) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_POSTGRES.format(update))
    else:
        for statement in _SQLITE.format(update).split("; CREATE"):
            schema_editor.execute(statement if statement.startswith("DROP") else "CREATE" + statement)


def forwards(apps, schema_editor):
    _install(schema_editor, _SET)
    schema_editor.execute(_BACKFILL)


def backwards(apps, schema_editor):
    _install(schema_editor, _OLD_SET)


class Migration(migrations.Migration):
    dependencies = [("webapp", "0024_trail_guards")]

    operations = [
        migrations.AlterField(
            model_name="response",
            name="reviewed",
            field=models.BooleanField(
                db_default=False,
                editable=False,
                help_text="A claim of it has a review standing (kept by a trigger on webapp_review)",
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
