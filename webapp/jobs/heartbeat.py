"""A running job's or upload's heartbeat while its worker is alive, whatever the work is doing (loading a model, one
long batch, unpacking a large zip, writing its rows).

The stale-work watchdog re-sends a running job or upload whose heartbeat stops; progress updates alone would let
a slow model load look like a dead worker. A killed worker's thread dies with it, so the beat stops; a database
blip only skips a beat, or a long job would be re-sent (and its GPU work done twice) after one dropped connection.
"""

import threading
from contextlib import contextmanager

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import QuerySet
from django.utils import timezone


@contextmanager
def heartbeat(running: QuerySet, every: float | None = None):
    """Refresh `heartbeat_at` of the `running` rows from a thread with its own connection until the block ends.

    Filter `running` on the running state, so a row that finished (or was cancelled) meanwhile keeps its end.
    """
    interval = every or max(settings.STALE_JOB_SECONDS / 4, 0.5)
    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(interval):
                try:
                    running.update(heartbeat_at=timezone.now())
                except DatabaseError:  # a blip (a restart, a dropped connection): reconnect on the next beat
                    connection.close()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{running.model.__name__}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
