"""Response.reviewed: whether any claim of the answer has a review, kept by a trigger on webapp_review.

The pair list filters and marks pairs by "reviewed"; probing every pair's claims for a review cost more than
the rest of the page. Reviews are append-only, so the flag only ever turns on. The trigger (PostgreSQL and
SQLite) also covers rows written by bulk loads and COPY, which bypass the ORM.
"""

from importlib import import_module

from django.db import migrations, models

# SQLite adds the column by rebuilding webapp_response, which its triggers on webapp_preferencepair name:
# they are dropped around the rebuild and created again.
pair_triggers = import_module("webapp.migrations.0002_pair_same_instruction")

_SET = """UPDATE webapp_response SET reviewed = TRUE
  WHERE id = (SELECT response_id FROM webapp_claim WHERE id = NEW.claim_id) AND NOT reviewed"""

_POSTGRES = f"""
CREATE FUNCTION webapp_response_reviewed() RETURNS trigger AS $$
BEGIN
  {_SET};
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER webapp_response_reviewed AFTER INSERT ON webapp_review
  FOR EACH ROW EXECUTE FUNCTION webapp_response_reviewed();
"""
_POSTGRES_DROP = """
DROP TRIGGER IF EXISTS webapp_response_reviewed ON webapp_review;
DROP FUNCTION IF EXISTS webapp_response_reviewed();
"""
_SQLITE = f"CREATE TRIGGER webapp_response_reviewed AFTER INSERT ON webapp_review BEGIN {_SET}; END;"
_SQLITE_DROP = "DROP TRIGGER IF EXISTS webapp_response_reviewed;"
_BACKFILL = """UPDATE webapp_response SET reviewed = TRUE WHERE EXISTS (
  SELECT 1 FROM webapp_claim c JOIN webapp_review r ON r.claim_id = c.id WHERE c.response_id = webapp_response.id)"""


def create(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    schema_editor.execute(_POSTGRES if postgres else _SQLITE)
    schema_editor.execute(_BACKFILL)


def drop(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    schema_editor.execute(_POSTGRES_DROP if postgres else _SQLITE_DROP)


def before_rebuild(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        pair_triggers.drop(apps, schema_editor)


def after_rebuild(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        pair_triggers.create(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("webapp", "0004_pair_list_keyset_indexes")]

    operations = [
        migrations.RunPython(before_rebuild, after_rebuild),
        migrations.AddField(
            model_name="response",
            name="reviewed",
            field=models.BooleanField(
                db_default=False,
                editable=False,
                help_text="A claim of it has a review (set by a trigger on webapp_review)",
            ),
        ),
        migrations.RunPython(after_rebuild, before_rebuild),
        migrations.RunPython(create, drop),
    ]
