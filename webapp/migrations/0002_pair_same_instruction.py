"""A pair's chosen and rejected responses answer the pair's instruction in the pair's iteration.

The rule spans two tables, which a CHECK constraint cannot express, so triggers enforce it
(PostgreSQL and SQLite). A violation raises IntegrityError like any other constraint.
"""

from django.db import migrations

_MESSAGE = "pair responses must answer the pair's instruction in the pair's iteration"

_POSTGRES = f"""
CREATE FUNCTION webapp_pair_same_instruction() RETURNS trigger AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM webapp_response r WHERE r.id = NEW.chosen_id
                 AND r.instruction_id = NEW.instruction_id AND r.iteration_id = NEW.iteration_id)
     OR NOT EXISTS (SELECT 1 FROM webapp_response r WHERE r.id = NEW.rejected_id
                 AND r.instruction_id = NEW.instruction_id AND r.iteration_id = NEW.iteration_id) THEN
    RAISE EXCEPTION '{_MESSAGE.replace("'", "''")}' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER webapp_pair_same_instruction BEFORE INSERT OR UPDATE ON webapp_preferencepair
  FOR EACH ROW EXECUTE FUNCTION webapp_pair_same_instruction();
"""
_POSTGRES_DROP = """
DROP TRIGGER IF EXISTS webapp_pair_same_instruction ON webapp_preferencepair;
DROP FUNCTION IF EXISTS webapp_pair_same_instruction();
"""

_SQLITE_CONDITION = """
  NOT EXISTS (SELECT 1 FROM webapp_response r WHERE r.id = NEW.chosen_id
              AND r.instruction_id = NEW.instruction_id AND r.iteration_id = NEW.iteration_id)
  OR NOT EXISTS (SELECT 1 FROM webapp_response r WHERE r.id = NEW.rejected_id
              AND r.instruction_id = NEW.instruction_id AND r.iteration_id = NEW.iteration_id)
"""
_SQLITE = [
    f"""CREATE TRIGGER webapp_pair_same_instruction_{event.lower()} BEFORE {event} ON webapp_preferencepair
    WHEN {_SQLITE_CONDITION}
    BEGIN SELECT RAISE(ABORT, '{_MESSAGE.replace("'", "''")}'); END;"""
    for event in ("INSERT", "UPDATE")
]
_SQLITE_DROP = [f"DROP TRIGGER IF EXISTS webapp_pair_same_instruction_{e};" for e in ("insert", "update")]


def create(apps, schema_editor):
    statements = [_POSTGRES] if schema_editor.connection.vendor == "postgresql" else _SQLITE
    for sql in statements:
        schema_editor.execute(sql)


def drop(apps, schema_editor):
    statements = [_POSTGRES_DROP] if schema_editor.connection.vendor == "postgresql" else _SQLITE_DROP
    for sql in statements:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("webapp", "0001_initial")]
    operations = [migrations.RunPython(create, drop)]
