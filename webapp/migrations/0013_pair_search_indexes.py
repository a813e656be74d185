"""GIN indexes for the pair list's full-text search (webapp.selectors.search_pairs), on PostgreSQL only: other
databases search by substring, unindexed. Each indexes exactly the expression Django writes for
`SearchVector(field, config="english")`, so the planner uses it."""

from django.db import migrations

INDEXES = {
    "instruction_question_search_idx": ("webapp_instruction", "question"),
    "response_text_search_idx": ("webapp_response", "text"),
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, (table, column) in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} "
            f"USING gin (to_tsvector('english'::regconfig, COALESCE({column}, '')))"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("webapp", "0012_text_length_limits")]
    operations = [migrations.RunPython(create, drop)]
