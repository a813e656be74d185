"""InstructionSource: the instructions of each source, counted by triggers on webapp_instruction.

The dashboard lists the sources with their instructions and the pair list offers them as a filter; grouping
every instruction for that grew with the data (100k instructions at ten million claims). Triggers keep the
counts whoever writes instructions (importers, the admin, COPY). On PostgreSQL they run once per statement over
its transition table, so a bulk insert adds one row per source, not one per instruction; SQLite has only row
triggers. A migration that rebuilds webapp_instruction on SQLite (adding a column) drops its triggers and must
create them again, as 0005_response_reviewed does for the pair triggers.
"""

from django.db import migrations, models

_ADD = """INSERT INTO webapp_instructionsource (name, instructions)
    SELECT source, COUNT(*) FROM new_rows GROUP BY source
  ON CONFLICT (name) DO UPDATE SET instructions = webapp_instructionsource.instructions + EXCLUDED.instructions"""
_TAKE = """UPDATE webapp_instructionsource s SET instructions = s.instructions - gone.n
    FROM (SELECT source, COUNT(*) AS n FROM old_rows GROUP BY source) gone WHERE s.name = gone.source"""

_POSTGRES = f"""
CREATE FUNCTION webapp_instructionsource_insert() RETURNS trigger AS $$
BEGIN {_ADD}; RETURN NULL; END $$ LANGUAGE plpgsql;
CREATE FUNCTION webapp_instructionsource_delete() RETURNS trigger AS $$
BEGIN {_TAKE}; RETURN NULL; END $$ LANGUAGE plpgsql;
CREATE FUNCTION webapp_instructionsource_update() RETURNS trigger AS $$
BEGIN {_TAKE}; {_ADD}; RETURN NULL; END $$ LANGUAGE plpgsql;
CREATE TRIGGER webapp_instructionsource_insert AFTER INSERT ON webapp_instruction
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION webapp_instructionsource_insert();
CREATE TRIGGER webapp_instructionsource_delete AFTER DELETE ON webapp_instruction
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION webapp_instructionsource_delete();
CREATE TRIGGER webapp_instructionsource_update AFTER UPDATE ON webapp_instruction
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION webapp_instructionsource_update();
"""
_POSTGRES_DROP = """
DROP TRIGGER IF EXISTS webapp_instructionsource_insert ON webapp_instruction;
DROP TRIGGER IF EXISTS webapp_instructionsource_delete ON webapp_instruction;
DROP TRIGGER IF EXISTS webapp_instructionsource_update ON webapp_instruction;
DROP FUNCTION IF EXISTS webapp_instructionsource_insert();
DROP FUNCTION IF EXISTS webapp_instructionsource_delete();
DROP FUNCTION IF EXISTS webapp_instructionsource_update();
"""

_SQLITE_ADD = """INSERT OR IGNORE INTO webapp_instructionsource (name, instructions) VALUES (NEW.source, 0);
  UPDATE webapp_instructionsource SET instructions = instructions + 1 WHERE name = NEW.source;"""
_SQLITE_TAKE = "UPDATE webapp_instructionsource SET instructions = instructions - 1 WHERE name = OLD.source;"
_SQLITE = [
    f"CREATE TRIGGER webapp_instructionsource_insert AFTER INSERT ON webapp_instruction BEGIN {_SQLITE_ADD} END;",
    f"CREATE TRIGGER webapp_instructionsource_delete AFTER DELETE ON webapp_instruction BEGIN {_SQLITE_TAKE} END;",
    "CREATE TRIGGER webapp_instructionsource_update AFTER UPDATE OF source ON webapp_instruction "
    f"WHEN OLD.source <> NEW.source BEGIN {_SQLITE_TAKE} {_SQLITE_ADD} END;",
]
_SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS webapp_instructionsource_{event};" for event in ("insert", "delete", "update")
]
_BACKFILL = """INSERT INTO webapp_instructionsource (name, instructions)
  SELECT source, COUNT(*) FROM webapp_instruction GROUP BY source"""


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_POSTGRES)
    else:
        for statement in _SQLITE:
            schema_editor.execute(statement)
    schema_editor.execute(_BACKFILL)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_POSTGRES_DROP)
    else:
        for statement in _SQLITE_DROP:
            schema_editor.execute(statement)
    schema_editor.execute("DELETE FROM webapp_instructionsource")


class Migration(migrations.Migration):
    dependencies = [("webapp", "0017_iteration_counts_kept_by_writers")]

    operations = [
        migrations.CreateModel(
            name="InstructionSource",
            fields=[
                ("name", models.CharField(max_length=100, primary_key=True, serialize=False)),
                ("instructions", models.PositiveIntegerField(default=0)),
            ],
            options={"ordering": ["name"]},
        ),
        migrations.RunPython(create, drop),
    ]
