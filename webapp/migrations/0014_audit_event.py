"""AuditEvent: the append-only trail of every state-changing action, guarded in the database too.

Triggers (PostgreSQL and SQLite) refuse every UPDATE and DELETE of a row, whoever runs it; a violation raises
IntegrityError like any other constraint. Emptying the whole database (`manage.py flush`, which the test suite
runs between tests) still works: PostgreSQL's TRUNCATE fires no row trigger, and on SQLite the project's
`flush` command lifts these triggers for its duration (webapp/management/commands/flush.py). A later migration
that rebuilds this table on SQLite (adding a column, say) drops them: create them again after it, as 0006
does for the trigger of 0005.
"""

import django.core.serializers.json
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

MESSAGE = "audit events are append-only"

POSTGRES = f"""
CREATE FUNCTION webapp_auditevent_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'restrict_violation';
END $$ LANGUAGE plpgsql;
CREATE TRIGGER webapp_auditevent_append_only BEFORE UPDATE OR DELETE ON webapp_auditevent
  FOR EACH ROW EXECUTE FUNCTION webapp_auditevent_append_only();
"""
POSTGRES_DROP = """
DROP TRIGGER IF EXISTS webapp_auditevent_append_only ON webapp_auditevent;
DROP FUNCTION IF EXISTS webapp_auditevent_append_only();
"""
SQLITE = [
    f"CREATE TRIGGER webapp_auditevent_no_{verb.lower()} BEFORE {verb} ON webapp_auditevent "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;"
    for verb in ("UPDATE", "DELETE")
]
SQLITE_DROP = [f"DROP TRIGGER IF EXISTS webapp_auditevent_no_{verb};" for verb in ("update", "delete")]


def create(apps, schema_editor):
    for sql in [POSTGRES] if schema_editor.connection.vendor == "postgresql" else SQLITE:
        schema_editor.execute(sql)


def drop(apps, schema_editor):
    for sql in [POSTGRES_DROP] if schema_editor.connection.vendor == "postgresql" else SQLITE_DROP:
        schema_editor.execute(sql)


class Migration(migrations.Migration):

    dependencies = [
        ('webapp', '0013_pair_search_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ('actor', models.CharField(help_text="The user's name then, or 'command line (OS user)'", max_length=200)),
                ('address', models.GenericIPAddressField(blank=True, help_text="The client's address (X-Forwarded-For only as FORWARDED_FOR_PROXIES allows)", null=True)),
                ('action', models.CharField(choices=[('create', 'created the iteration'), ('edit', "changed the draft's settings"), ('launch', 'launched'), ('approve', 'approved the review gate (training)'), ('cancel', 'cancelled'), ('resume', 'resumed'), ('delete', 'deleted the iteration'), ('export', 'downloaded the pairs'), ('exclude', 'excluded a pair from training'), ('include', 'included a pair in training again'), ('upload', 'uploaded instructions to import'), ('import', 'imported instructions'), ('import_rlaifv', 'imported an RLAIF-V dataset'), ('add_user', 'added a user'), ('change_user', 'changed a user'), ('delete_user', 'deleted a user'), ('add_group', 'added a group'), ('change_group', 'changed a group'), ('delete_group', 'deleted a group'), ('margin', "applied a decision margin to the labeler's verdicts"), ('draw_audit', 'drew an audit sample of claims')], max_length=20)),
                ('iteration', models.PositiveIntegerField(blank=True, help_text="The iteration's number, if any", null=True)),
                ('target', models.CharField(blank=True, help_text="What it concerns, e.g. 'pair 17', 'user alice'", max_length=300)),
                ('details', models.JSONField(blank=True, default=dict, encoder=django.core.serializers.json.DjangoJSONEncoder)),
                ('user', models.ForeignKey(blank=True, help_text='The signed-in user; empty for a command run on the server', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at', '-pk'],
                'indexes': [models.Index(fields=['iteration', '-created_at'], name='auditevent_iteration_idx'), models.Index(fields=['-created_at'], name='auditevent_created_idx')],
                'constraints': [models.CheckConstraint(condition=models.Q(('action__in', ['create', 'edit', 'launch', 'approve', 'cancel', 'resume', 'delete', 'export', 'exclude', 'include', 'upload', 'import', 'import_rlaifv', 'add_user', 'change_user', 'delete_user', 'add_group', 'change_group', 'delete_group', 'margin', 'draw_audit'])), name='auditevent_action_valid')],
            },
        ),
        migrations.RunPython(create, drop),
    ]
