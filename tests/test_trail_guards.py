"""Nobody rewrites the trail: reviews are append-only in the database, SQLite's INSERT OR REPLACE cannot rewrite a
row, the app's PostgreSQL role cannot truncate, alter or disable the triggers of the trail and reviews, an
instruction with answers is read-only in the admin, and every admin change is on the trail.

Found by an attack: a superuser edited the question of an instruction under review and deleted an instruction and
login logs with no audit event; SQLite's `INSERT OR REPLACE` rewrote event 1; on PostgreSQL the app's role owned the
tables, so `TRUNCATE` and `DISABLE TRIGGER` worked; review rows had no trigger.
"""

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from axes.models import AccessLog
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from tests.factories import ClaimFactory, InstructionFactory, ResponseFactory, ReviewFactory, UserFactory
from webapp.accounts import audit
from webapp.models import AuditAction, AuditEvent, Decision, Instruction, Review

ROOT = Path(__file__).resolve().parents[1]
A = AuditAction
postgres = pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").split(":")[0] not in ("postgres", "postgresql"), reason="PostgreSQL roles"
)


# --- reviews: append-only in the database ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("sql", ["UPDATE webapp_review SET decision = 'correct'", "DELETE FROM webapp_review"])
def test_the_database_refuses_to_change_or_delete_a_review(sql):
    ReviewFactory()
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert list(Review.objects.values_list("decision", flat=True)) == [Decision.HALLUCINATED]


def test_flush_empties_the_reviews_and_leaves_them_guarded(transactional_db):
    ReviewFactory()
    call_command("flush", interactive=False, verbosity=0)
    assert not Review.objects.exists()
    ReviewFactory()
    with pytest.raises(IntegrityError, match="append-only"), connection.cursor() as cursor:
        cursor.execute("DELETE FROM webapp_review")


def test_sqlite_refuses_insert_or_replace_over_an_event_or_a_review(tmp_path):
    """The demo's database: `INSERT OR REPLACE` deletes the row it replaces without firing a delete trigger."""
    database = tmp_path / "db.sqlite3"
    env = os.environ | {"DATABASE_URL": f"sqlite:///{database}", "VAR_DIR": str(tmp_path), "DEBUG": "1"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO webapp_auditevent (id, created_at, actor, action, target, details) "
            "VALUES (1, '2026-01-01', 'alice', 'export', 'pair 1', '{}')"
        )
        with pytest.raises(sqlite3.IntegrityError, match="audit events are append-only"):
            db.execute(
                "INSERT OR REPLACE INTO webapp_auditevent (id, created_at, actor, action, target, details) "
                "VALUES (1, '2026-01-01', 'mallory', 'export', 'nothing', '{}')"
            )
        review = "INSERT {} INTO webapp_review (id, decision, note, created_at, claim_id, reviewer_id, iteration_id) "
        db.execute(review.format("") + "VALUES (1, 'hallucinated', '', '2026-01-01', 1, 1, 1)")
        with pytest.raises(sqlite3.IntegrityError, match="reviews are append-only"):
            db.execute(review.format("OR REPLACE") + "VALUES (1, 'correct', '', '2026-01-01', 1, 1, 1)")
        assert db.execute("SELECT decision FROM webapp_review").fetchall() == [("hallucinated",)]
        assert db.execute("SELECT actor FROM webapp_auditevent").fetchall() == [("alice",)]
        triggers = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert {"webapp_review_no_update", "webapp_review_no_delete", "webapp_review_no_replace"} <= triggers


# --- the app's PostgreSQL role ----------------------------------------------------------------------------------


@pytest.fixture
def app_role(transactional_db):
    """A role granted by `grant_app_role` on the test database, and a connection as it."""
    role = f"studio_app_test_{uuid.uuid4().hex[:8]}"
    os.environ["TEST_APP_ROLE_PASSWORD"] = "not-a-secret"
    try:
        call_command("grant_app_role", role, "--password-env", "TEST_APP_ROLE_PASSWORD", verbosity=0)
    finally:
        del os.environ["TEST_APP_ROLE_PASSWORD"]
    params = connection.get_connection_params() | {"user": role, "password": "not-a-secret"}
    params = {key: value for key, value in params.items() if key in ("dbname", "host", "port", "user", "password")}
    with psycopg.connect(**params, autocommit=True) as as_role:
        yield role, as_role
    with connection.cursor() as cursor:
        cursor.execute(f'DROP OWNED BY "{role}"')
        cursor.execute(f'DROP ROLE "{role}"')


@postgres
@pytest.mark.parametrize(
    "sql",
    [
        "TRUNCATE webapp_auditevent",
        "TRUNCATE webapp_review",
        "TRUNCATE webapp_iteration CASCADE",
        "ALTER TABLE webapp_auditevent DISABLE TRIGGER ALL",
        "ALTER TABLE webapp_review DISABLE TRIGGER webapp_review_append_only",
        "DROP TRIGGER webapp_auditevent_append_only ON webapp_auditevent",
        "DROP TABLE webapp_review",
        "SET session_replication_role = replica",
        "UPDATE webapp_auditevent SET target = 'y'",
        "DELETE FROM webapp_auditevent",
        "UPDATE webapp_review SET decision = 'correct'",
        "DELETE FROM webapp_review",
        "CREATE TABLE public.mine (id int)",
    ],
)
def test_the_app_role_cannot_rewrite_the_trail(app_role, sql):
    _, as_role = app_role
    audit.record(A.EXPORT, target="x")
    ReviewFactory()
    events = AuditEvent.objects.count()
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_role.execute(sql)
    assert AuditEvent.objects.count() == events and Review.objects.count() == 1


@postgres
def test_the_app_role_runs_the_site(app_role, client, settings):
    """What the site does with rows works as the role: reads, appends to the trail and the reviews, updates and
    deletes elsewhere, sequences."""
    _, as_role = app_role
    claim = ClaimFactory()
    reviewer = UserFactory()
    as_role.execute(
        "INSERT INTO webapp_review (claim_id, reviewer_id, decision, note, created_at, iteration_id) "
        "VALUES (%s, %s, 'correct', '', now(), %s)",
        [claim.pk, reviewer.pk, claim.response.iteration_id],
    )
    as_role.execute(
        "INSERT INTO webapp_auditevent (created_at, actor, action, target, details) "
        "VALUES (now(), 'alice', 'export', 'x', '{}')"
    )
    as_role.execute("UPDATE webapp_iteration SET error = 'x' WHERE id = %s", [claim.response.iteration_id])
    as_role.execute("DELETE FROM django_session")
    assert as_role.execute("SELECT count(*) FROM webapp_review").fetchone() == (1,)
    assert Review.objects.get().decision == Decision.CORRECT
    # The whole app, as the role: a Django process whose DATABASE_URL names it.
    url = f"postgres://{app_role[0]}:not-a-secret@{connection.settings_dict['HOST'] or '127.0.0.1'}:" + (
        f"{connection.settings_dict['PORT'] or 5432}/{connection.settings_dict['NAME']}"
    )
    env = os.environ | {"DATABASE_URL": url, "DEBUG": "1"}
    script = (
        "from webapp.accounts import audit; from webapp.models import *; "
        "audit.record('export', target='as the role'); "
        "print(AuditEvent.objects.count(), Instruction.objects.count())"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == [str(AuditEvent.objects.count()), str(Instruction.objects.count())]
    assert AuditEvent.objects.filter(target="as the role").exists()


@postgres
def test_grant_app_role_refuses_the_owner_and_a_missing_role_without_a_password(transactional_db):
    with pytest.raises(CommandError, match="superuser"):
        call_command("grant_app_role", connection.settings_dict["USER"] or "postgres")
    with pytest.raises(CommandError, match="no role 'nobody_here'.*--password-env"):
        call_command("grant_app_role", "nobody_here")


# --- the admin ------------------------------------------------------------------------------------------------


@pytest.fixture
def superuser(client):
    user = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_an_instruction_with_answers_is_read_only_in_the_admin(superuser):
    answered = ResponseFactory().instruction
    url = reverse("admin:webapp_instruction_change", args=[answered.pk])
    page = superuser.get(url)
    assert page.status_code == 200 and 'name="question"' not in page.content.decode()  # shown, not editable
    superuser.post(url, {"question": "What is not in the picture?", "source": answered.source, "split": "train"})
    assert Instruction.objects.get(pk=answered.pk).question == answered.question
    assert superuser.get(reverse("admin:webapp_instruction_delete", args=[answered.pk])).status_code == 403


@pytest.mark.django_db
def test_every_admin_change_is_on_the_trail(superuser):
    free = InstructionFactory(question="What is this?")
    url = reverse("admin:webapp_instruction_change", args=[free.pk])
    page = superuser.get(url)
    assert 'name="question"' in page.content.decode()
    response = superuser.post(url, {"question": "What colour is it?", "source": free.source, "split": free.split})
    assert response.status_code == 302
    change = AuditEvent.objects.get(action=A.ADMIN_CHANGE)
    assert (change.actor, change.details["model"], change.details["object_id"]) == ("root", "webapp.instruction",
                                                                                    str(free.pk))  # fmt: skip
    assert "Question" in change.details["change"]

    response = superuser.post(reverse("admin:webapp_instruction_delete", args=[free.pk]), {"post": "yes"})
    assert response.status_code == 302 and not Instruction.objects.filter(pk=free.pk).exists()
    assert AuditEvent.objects.get(action=A.ADMIN_DELETE).target.startswith(f"webapp.instruction {free.pk}:")


@pytest.mark.django_db
def test_a_bulk_delete_in_the_admin_is_on_the_trail_one_event_per_row(superuser):
    """Django writes a bulk deletion's log entries with bulk_create, which sends no signal."""
    logs = [AccessLog.objects.create(username=f"user{n}", ip_address="192.0.2.1", user_agent="x") for n in range(3)]
    response = superuser.post(
        reverse("admin:axes_accesslog_changelist"),
        {"action": "delete_selected", "_selected_action": [log.pk for log in logs], "post": "yes", "index": 0},
    )
    assert response.status_code == 302 and not AccessLog.objects.filter(pk__in=[log.pk for log in logs]).exists()
    deleted = AuditEvent.objects.filter(action=A.ADMIN_DELETE)
    assert sorted(e.details["object_id"] for e in deleted) == sorted(str(log.pk) for log in logs)
    assert {e.details["model"] for e in deleted} == {"axes.accesslog"} and {e.actor for e in deleted} == {"root"}

    one = InstructionFactory()
    superuser.post(
        reverse("admin:webapp_instruction_changelist"),
        {"action": "delete_selected", "_selected_action": [one.pk], "post": "yes", "index": 0},
    )
    assert AuditEvent.objects.filter(action=A.ADMIN_DELETE, details__model="webapp.instruction").count() == 1


@pytest.mark.django_db
def test_iteration_and_user_changes_keep_their_own_events_only(superuser):
    superuser.post(
        reverse("admin:auth_user_add"),
        {"username": "carol", "password1": "x-Long-pass-1", "password2": "x-Long-pass-1"},
    )
    assert AuditEvent.objects.filter(action=A.ADD_USER, target="user carol").count() == 1
    assert not AuditEvent.objects.filter(action__in=[A.ADMIN_ADD, A.ADMIN_CHANGE]).exists()
