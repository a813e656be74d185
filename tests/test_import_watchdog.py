"""The watchdog re-sends an upload whose message was lost or whose worker died, through the real broker, and a
re-sent upload is imported once: a delivery of one done finds it done, one whose first worker is still writing
waits for it."""

import importlib
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.apps import apps
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone
from kombu import Exchange, Queue

from tests.test_importing import png_bytes
from tests.test_transfer import upload_form, uploaded_files
from tests.threads import eventually, finished, in_thread
from tests.workers import purge_queues
from webapp.celery import app
from webapp.iterations.dispatch import RUN_IMPORT_TASK
from webapp.jobs.imports import FINAL, run_import
from webapp.jobs.watchdog import requeue_stale_imports
from webapp.models import AuditAction, AuditEvent, ImportState, Instruction, InstructionImport
from webapp.tasks import requeue_stale_jobs as beat_task
from webapp.transfer.image_writes import IMAGE_WRITES_LOCK
from webapp.transfer.images import validate_image

LONG_AGO = timedelta(hours=1)
needs_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="two writers at once need PostgreSQL")


@pytest.fixture(autouse=True)
def empty_queues():
    """Each test reads what it sent from the broker's `cpu` queue, so it starts empty."""
    purge_queues()
    yield
    purge_queues()


def sent_imports() -> list[int]:
    """The uploads whose import waits in the broker's `cpu` queue, in the order sent; taken off the queue."""
    queue = Queue("cpu", Exchange("cpu", type="direct"), routing_key="cpu")
    sent = []
    with app.connection_for_write() as conn:
        bound = queue(conn.default_channel)
        while (message := bound.get(no_ack=True)) is not None:
            assert message.headers["task"] == RUN_IMPORT_TASK
            args, _kwargs, _embed = message.decode()
            sent += args
    return sent


def posted(client, user) -> InstructionImport:
    """An upload posted through the form, as the browser does (its first message is sent once it commits)."""
    client.force_login(user)
    assert client.post(reverse("imports"), upload_form()).status_code == 302
    return InstructionImport.objects.get()


def made(state=ImportState.PENDING, silent_for: timedelta | None = LONG_AGO) -> InstructionImport:
    """An upload in `state` whose last sign of life is `silent_for` ago (None: it never showed any)."""
    heartbeat_at = timezone.now() - silent_for if silent_for is not None else None
    return InstructionImport.objects.create(
        jsonl="imports/a.jsonl", images="imports/a.zip", state=state, heartbeat_at=heartbeat_at
    )


def requeued(stale_after: timedelta | None = None, capture=None) -> int:
    """Run the watchdog once and let its messages go (they are sent when its transaction commits)."""
    with capture(execute=True):
        return requeue_stale_imports(stale_after)


# --- what is re-sent ----------------------------------------------------------------------------------------------


def test_the_form_sends_the_upload_and_counts_that_as_life(client, bob, media_root, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        upload = posted(client, bob)
    assert sent_imports() == [upload.pk]
    assert timezone.now() - upload.heartbeat_at < timedelta(minutes=1)


@pytest.mark.parametrize(
    "state, silent_for",
    [(ImportState.PENDING, LONG_AGO), (ImportState.RUNNING, LONG_AGO), (ImportState.PENDING, None)],
    ids=["pending", "running", "never-sent"],
)
def test_a_silent_upload_is_sent_again_and_keeps_its_state(db, django_capture_on_commit_callbacks, state, silent_for):
    upload = made(state, silent_for)
    assert requeued(capture=django_capture_on_commit_callbacks) == 1
    assert sent_imports() == [upload.pk]
    upload.refresh_from_db()
    assert upload.state == state  # a worker still running it may finish it
    assert timezone.now() - upload.heartbeat_at < timedelta(minutes=1)  # sending it is a sign of life
    assert requeued(capture=django_capture_on_commit_callbacks) == 0  # not again until it is silent a period again
    assert sent_imports() == []


def test_an_upload_whose_worker_keeps_dying_fails_after_its_resends(db, django_capture_on_commit_callbacks, settings):
    """Found by an attack: an upload that killed its worker every time would have been re-sent forever."""
    settings.IMPORT_MAX_RESENDS = 2
    upload = made(ImportState.RUNNING)

    def silent_again():
        InstructionImport.objects.filter(pk=upload.pk).update(heartbeat_at=timezone.now() - LONG_AGO)

    for resends in (1, 2):
        assert requeued(capture=django_capture_on_commit_callbacks) == 1
        upload.refresh_from_db()
        assert upload.resends == resends and upload.state == ImportState.RUNNING
        silent_again()  # its worker died again
    assert sent_imports() == [upload.pk, upload.pk]
    assert requeued(capture=django_capture_on_commit_callbacks) == 0
    upload.refresh_from_db()
    assert upload.state == ImportState.FAILED and "after 2 re-sends" in upload.error
    assert sent_imports() == []


@pytest.mark.parametrize("state", [ImportState.PENDING, ImportState.RUNNING])
def test_an_upload_that_showed_life_lately_is_not_sent(db, django_capture_on_commit_callbacks, settings, state):
    settings.STALE_JOB_SECONDS = 600
    made(state, silent_for=timedelta(minutes=9))
    assert requeued(capture=django_capture_on_commit_callbacks) == 0
    assert sent_imports() == []


@pytest.mark.parametrize("state", [ImportState.SUCCEEDED, ImportState.FAILED])
@pytest.mark.parametrize("silent_for", [LONG_AGO, None], ids=["long-ago", "never"])
def test_a_finished_upload_is_never_sent_again(db, django_capture_on_commit_callbacks, state, silent_for):
    made(state, silent_for)
    assert requeued(timedelta(seconds=0), capture=django_capture_on_commit_callbacks) == 0
    assert sent_imports() == []


def test_the_beat_task_sends_stale_uploads_and_counts_them(db, django_capture_on_commit_callbacks, settings):
    settings.STALE_JOB_SECONDS = 600
    stale, fresh = made(silent_for=LONG_AGO), made(silent_for=timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert beat_task() == 1
    assert sent_imports() == [stale.pk]
    fresh.refresh_from_db()
    assert timezone.now() - fresh.heartbeat_at > timedelta(seconds=1)  # left as it was


def test_uploads_from_before_the_heartbeat_are_seen_silent_since_uploaded(db, django_capture_on_commit_callbacks):
    old = made(silent_for=None)
    InstructionImport.objects.filter(pk=old.pk).update(uploaded_at=timezone.now() - LONG_AGO)
    importlib.import_module("webapp.migrations.0019_import_heartbeat").since_uploaded(apps, None)
    old.refresh_from_db()
    assert old.heartbeat_at == old.uploaded_at
    assert requeued(capture=django_capture_on_commit_callbacks) == 1 and sent_imports() == [old.pk]


# --- a re-sent upload is imported once -------------------------------------------------------------------------


def imported_once(upload: InstructionImport, media_root) -> None:
    """The upload's two lines were imported once, by one import on the audit trail, and every image is there."""
    upload.refresh_from_db()
    assert (upload.state, upload.created, upload.skipped, upload.error) == (ImportState.SUCCEEDED, 2, 0, "")
    assert Instruction.objects.count() == 2
    assert AuditEvent.objects.filter(action=AuditAction.IMPORT).count() == 1
    assert all(default_storage.exists(name) for name in Instruction.objects.values_list("image", flat=True))
    assert uploaded_files(media_root) == []


def test_a_resent_upload_done_meanwhile_imports_nothing_twice(
    client, bob, media_root, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        upload = posted(client, bob)
    [first] = sent_imports()
    InstructionImport.objects.filter(pk=upload.pk).update(heartbeat_at=timezone.now() - LONG_AGO)
    assert requeued(capture=django_capture_on_commit_callbacks) == 1
    [again] = sent_imports()
    run_import(first, worker="slow")  # the first message turns up after all
    run_import(again, worker="other")  # then the watchdog's
    imported_once(upload, media_root)


@contextmanager
def one_line_held():
    """Write the upload's first instruction in an open transaction, as another import of the same line would: the
    upload's own write waits for it until the block ends, and then finds it rolled back."""
    image = validate_image(png_bytes())
    with transaction.atomic():
        Instruction.objects.create(
            source="web", question="What color is it?", image_sha256=image.sha256, image=image.name,
            width=image.width, height=image.height,
        )  # fmt: skip
        yield
        transaction.set_rollback(True)


def waiting(sql: str, params=()) -> int:
    """How many sessions wait for a lock that `sql` (a condition on pg_locks) names; pg_locks is read live, even
    inside the test's open transaction."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted AND {sql}", params)
        return cursor.fetchone()[0]


def waiting_for_this_test() -> int:
    """Sessions waiting for the test's own transaction (an import writing the line it holds)."""
    return waiting("pg_backend_pid() = ANY(pg_blocking_pids(pid))")


def waiting_for_the_write_lock() -> int:
    """Sessions waiting for the image-writing lock: another import is writing."""
    return waiting(
        "locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND classid = 0 AND objid = %s AND objsubid = 1",  # a bigint key: its high and low halves
        [IMAGE_WRITES_LOCK],
    )


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_upload_writing_for_long_still_shows_life_and_is_not_resent(client, bob, media_root, settings):
    settings.STALE_JOB_SECONDS = 2  # the heartbeat beats every 0.5 s
    upload = posted(client, bob)
    sent_imports()
    with one_line_held():
        worker = in_thread(run_import, upload.pk, worker="first")
        eventually(lambda: waiting_for_this_test() == 1)  # its write waits, in the phase without progress writes
        upload.refresh_from_db()
        last_progress = upload.heartbeat_at
        assert upload.phase == "writing"
        time.sleep(2.5)
        upload.refresh_from_db()
        assert upload.heartbeat_at > last_progress + timedelta(seconds=1)
        assert requeue_stale_imports(timedelta(seconds=2)) == 0
    finished(worker)
    assert sent_imports() == []
    imported_once(upload, media_root)


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_second_delivery_while_the_first_writes_waits_and_imports_nothing_twice(client, bob, media_root):
    upload = posted(client, bob)
    sent_imports()
    with one_line_held():
        first = in_thread(run_import, upload.pk, worker="first")
        eventually(lambda: waiting_for_this_test() == 1)
        second = in_thread(run_import, upload.pk, worker="second")  # the watchdog thought the first was dead
        eventually(lambda: waiting_for_the_write_lock() == 1)  # before it stored or wrote anything
    finished(first, second)
    imported_once(upload, media_root)


def test_a_lost_upload_is_imported_by_a_real_worker_once_the_watchdog_resends_it(processes, client, bob, media_root):
    upload = posted(client, bob)
    assert sent_imports() == [upload.pk]  # and so its message is lost, as in a Redis restart
    processes.wait_ready(processes.worker("w1", queues="cpu"))
    upload.refresh_from_db()
    assert upload.state == ImportState.PENDING
    deadline = time.monotonic() + 120
    while upload.state not in FINAL and time.monotonic() < deadline:
        requeue_stale_imports(timedelta(seconds=2))  # as beat does, every few seconds
        time.sleep(0.3)
        upload.refresh_from_db()
    imported_once(upload, media_root)
    assert upload.worker.startswith("w1@")
