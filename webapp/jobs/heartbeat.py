"""A job's heartbeat while its worker is alive, whatever the work is doing (loading a model, one long batch).

The stale-job watchdog re-sends a running job whose heartbeat stops; progress updates alone would let a
slow model load look like a dead worker. A killed worker's thread dies with it, so the beat stops.
"""

import threading
from contextlib import contextmanager

from django.conf import settings
from django.db import connection
from django.utils import timezone

from webapp.models import Job, JobState


@contextmanager
def heartbeat(job_id: int, every: float | None = None):
    interval = every or max(settings.STALE_JOB_SECONDS / 4, 0.5)
    stop = threading.Event()

    def beat():
        try:
            while not stop.wait(interval):
                Job.objects.filter(pk=job_id, state=JobState.RUNNING).update(heartbeat_at=timezone.now())
        except Exception:  # a database blip: the job's own writes will surface it
            pass
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
