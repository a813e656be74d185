"""One import writes images at a time: the lock an import holds while it stores images, writes the rows that
name them and, when it fails, deletes the images it stored.

Images are content-addressed and shared between instructions: an import stores only the files that are not
there yet, and a failed import deletes those it stored (nothing half-written). Without one lock for all imports,
a second import could find a file the first had just stored, commit rows naming it, and lose it when the first
failed and deleted it. Both importers (webapp/transfer/importing.py, webapp/transfer/rlaifv_import.py) hold
it, whoever runs them: the command line, an upload's worker, a re-sent delivery of that upload.

On PostgreSQL it is a session-level advisory lock, taken before the import's transaction and released after its
clean-up, so the clean-up is inside it too; imports wait for each other only while they write, never for a
reader. SQLite already runs one write transaction at a time (the demo's one worker); there the clean-up after a
rollback is outside that, a gap of one import failing while another commits the same image at that moment.
"""

from contextlib import contextmanager

from django.db import DatabaseError, connection

# The advisory lock's key (a bigint of the product's own; no other lock of the database uses it).
IMAGE_WRITES_LOCK = 7_201_001


@contextmanager
def image_writes():
    """Hold the image-writing lock for the block (waits while another import holds it)."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [IMAGE_WRITES_LOCK])
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [IMAGE_WRITES_LOCK])
        except DatabaseError:  # the connection is gone, and its session's locks with it
            pass
