"""A validation split (Instruction.split), and each answer's repeated claims (Response.repeated_claims).

On SQLite both changes rebuild their table (a new check constraint, a NOT NULL column), which breaks the
triggers that name it and drops those on it. Every trigger is set aside first and created again, as it was,
after the rebuilds (the same in both directions).
"""

from django.db import migrations, models

_TRIGGERS: list[str] = []


def set_triggers_aside(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        triggers = cursor.fetchall()
    _TRIGGERS[:] = [sql for _, sql in triggers]
    for name, _ in triggers:
        schema_editor.execute(f'DROP TRIGGER "{name}"')


def restore_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for sql in _TRIGGERS:
        schema_editor.execute(sql)
    _TRIGGERS.clear()


class Migration(migrations.Migration):

    dependencies = [
        ('webapp', '0021_job_kind_baseline'),
    ]

    operations = [
        migrations.RunPython(set_triggers_aside, restore_triggers),
        migrations.RemoveConstraint(
            model_name='instruction',
            name='instruction_split_valid',
        ),
        migrations.AddField(
            model_name='response',
            name='repeated_claims',
            field=models.PositiveIntegerField(db_default=0, help_text='Claims repeating an earlier claim of this answer (labeling.answer_shape), set by divide'),
        ),
        migrations.AlterField(
            model_name='instruction',
            name='split',
            field=models.CharField(choices=[('train', 'train'), ('validation', 'validation'), ('heldout', 'held-out (test)')], default='train', max_length=10),
        ),
        migrations.AlterField(
            model_name='response',
            name='score',
            field=models.IntegerField(blank=True, help_text='−(rejected claims, and repeated ones where config reject_repeats), cached', null=True),
        ),
        migrations.AddConstraint(
            model_name='instruction',
            constraint=models.CheckConstraint(condition=models.Q(('split__in', ['train', 'validation', 'heldout'])), name='instruction_split_valid'),
        ),
        migrations.RunPython(restore_triggers, set_triggers_aside),
    ]
