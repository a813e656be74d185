"""Imports share stored images by content, so one that fails must not delete a file that another committed rows
naming: every import stores images, writes rows and cleans up under one lock (webapp/transfer/image_writes.py)."""

import json
import threading

import pytest
from django.db import connection

from tests.test_export_import import instruction_rows
from tests.test_import_watchdog import waiting_for_the_write_lock
from tests.test_importing import png_bytes
from tests.threads import eventually, finished, in_thread
from webapp.models import Instruction
from webapp.transfer.image_writes import IMAGE_WRITES_LOCK
from webapp.transfer.importing import import_instructions
from webapp.transfer.rlaifv_import import import_rlaifv

needs_postgres = pytest.mark.skipif(connection.vendor != "postgresql", reason="two writers at once need PostgreSQL")


class LateFailure(Exception):
    """The first import fails after it stored its image and wrote its rows (the last check of its transaction)."""


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_an_import_that_fails_never_deletes_an_image_that_another_import_committed(tmp_path, media_root):
    (tmp_path / "red.png").write_bytes(png_bytes())
    first_stored, second_done = threading.Event(), threading.Event()

    def fail_late(result):
        first_stored.set()
        second_done.wait(3)  # under the lock the second import cannot finish meanwhile: this times out
        raise LateFailure

    def first():
        line = json.dumps({"image": "red.png", "question": "What colour is it?"})
        return import_instructions([(1, line)], tmp_path, commit_with=fail_late)

    def second():
        line = json.dumps({"image": "red.png", "question": "Describe the picture."})
        import_instructions([(1, line)], tmp_path)
        second_done.set()

    failing = in_thread(first)
    assert first_stored.wait(30)  # the first holds the red image, stored by it and not yet committed
    committing = in_thread(second)
    failing.join(60)
    committing.join(60)
    assert isinstance(failing.error, LateFailure) and committing.error is None
    kept = Instruction.objects.get()
    assert kept.question == "Describe the picture."
    assert kept.image.storage.exists(kept.image.name)  # stored again by the second, after the first deleted it
    assert kept.image.read() == png_bytes()


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_the_rlaifv_importer_stores_its_images_under_the_same_lock(tmp_path, media_root):
    path = instruction_rows(tmp_path, ((1, 2, 3), "What is it?"))
    holder = connection.get_new_connection(connection.get_connection_params())  # another import, say
    holder.autocommit = True
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", [IMAGE_WRITES_LOCK])
        importing = in_thread(import_rlaifv, path)
        eventually(lambda: waiting_for_the_write_lock() == 1)
        assert not [p for p in media_root.rglob("*") if p.is_file()]  # nothing stored while it waits
        holder.execute("SELECT pg_advisory_unlock(%s)", [IMAGE_WRITES_LOCK])
        finished(importing)
    finally:
        holder.close()
    stored = Instruction.objects.get()
    assert stored.question == "What is it?" and stored.image.storage.exists(stored.image.name)
