"""Review.undoes: an undo is a review naming the decision it takes back, so the history stays append-only.

An undo must name a decision (not an undo) of the same reviewer on the same claim. That spans rows, which a
CHECK constraint cannot express, so triggers enforce it (PostgreSQL and SQLite); a violation raises
IntegrityError like any other constraint. On SQLite the constraints rebuild webapp_review, which drops the
trigger of 0005 on it: it is created again after the rebuild (and before the rebuild when migrating backwards).
"""

from importlib import import_module

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

reviewed_trigger = import_module("webapp.migrations.0005_response_reviewed")

_MESSAGE = "an undo must name a decision of the same reviewer on the same claim"
_VALID = """EXISTS (SELECT 1 FROM webapp_review u WHERE u.id = NEW.undoes_id AND u.claim_id = NEW.claim_id
                 AND u.reviewer_id = NEW.reviewer_id AND u.decision <> 'undo')"""

_POSTGRES = f"""
CREATE FUNCTION webapp_review_undo_valid() RETURNS trigger AS $$
BEGIN
  IF NEW.undoes_id IS NOT NULL AND NOT {_VALID} THEN
    RAISE EXCEPTION '{_MESSAGE}' USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER webapp_review_undo_valid BEFORE INSERT ON webapp_review
  FOR EACH ROW EXECUTE FUNCTION webapp_review_undo_valid();
"""
_POSTGRES_DROP = """
DROP TRIGGER IF EXISTS webapp_review_undo_valid ON webapp_review;
DROP FUNCTION IF EXISTS webapp_review_undo_valid();
"""
_SQLITE = f"""CREATE TRIGGER webapp_review_undo_valid BEFORE INSERT ON webapp_review
  WHEN NEW.undoes_id IS NOT NULL AND NOT {_VALID}
  BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END;"""
_SQLITE_DROP = "DROP TRIGGER IF EXISTS webapp_review_undo_valid;"


def create(apps, schema_editor):
    schema_editor.execute(_POSTGRES if schema_editor.connection.vendor == "postgresql" else _SQLITE)


def drop(apps, schema_editor):
    schema_editor.execute(_POSTGRES_DROP if schema_editor.connection.vendor == "postgresql" else _SQLITE_DROP)


def restore_sqlite_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(reviewed_trigger._SQLITE_DROP)
        schema_editor.execute(reviewed_trigger._SQLITE)


class Migration(migrations.Migration):
    dependencies = [
        ("webapp", "0009_instruction_objects_present"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, restore_sqlite_trigger),
        migrations.RemoveConstraint(
            model_name="review",
            name="review_decision_valid",
        ),
        migrations.AddField(
            model_name="review",
            name="undoes",
            field=models.OneToOneField(
                blank=True,
                editable=False,
                help_text="For an undo: the reviewer's own decision on the same claim that it takes back (once)",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="undone_by",
                to="webapp.review",
            ),
        ),
        migrations.AlterField(
            model_name="review",
            name="decision",
            field=models.CharField(
                choices=[
                    ("correct", "correct"),
                    ("hallucinated", "hallucinated"),
                    ("unsure", "unsure"),
                    ("undo", "undo"),
                ],
                max_length=20,
            ),
        ),
        migrations.AddConstraint(
            model_name="review",
            constraint=models.CheckConstraint(
                condition=models.Q(("decision__in", ["correct", "hallucinated", "unsure", "undo"])),
                name="review_decision_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="review",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("decision", "undo"), ("undoes__isnull", False)),
                    models.Q(models.Q(("decision", "undo"), _negated=True), ("undoes__isnull", True)),
                    _connector="OR",
                ),
                name="review_undo_names_a_review",
            ),
        ),
        migrations.RunPython(restore_sqlite_trigger, migrations.RunPython.noop),
        migrations.RunPython(create, drop),
    ]
