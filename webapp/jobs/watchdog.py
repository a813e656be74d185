"""The stale-work watchdog: re-send jobs and uploads whose worker died or whose message was lost (a broker restart).

Celery beat runs both functions periodically (the task `webapp.tasks.requeue_stale_jobs`); `run_iteration --wait`
runs `requeue_stale_jobs`, the one its iteration needs.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from webapp.iterations.dispatch import enqueue, enqueue_import
from webapp.iterations.lifecycle import ACTIVE
from webapp.jobs.imports import fail_import
from webapp.models import ImportState, InstructionImport, Job, JobState

GAVE_UP = (
    "Its worker fell silent again after {resends} re-sends, so it is not sent again: an upload too large for the "
    "worker's memory or time dies this way. Split it into smaller uploads."
)


def stale_cutoff(stale_after: timedelta | None = None) -> datetime:
    """Work that showed no life since this moment is stale (default: `STALE_JOB_SECONDS` ago)."""
    return timezone.now() - (stale_after or timedelta(seconds=settings.STALE_JOB_SECONDS))


def requeue_stale_jobs(stale_after: timedelta | None = None) -> int:
    """Re-send the stale jobs of active iterations; returns how many.

    A running job with no heartbeat for `stale_after` lost its worker. Pending jobs are re-sent only when
    their whole stage is silent that long: a long queue behind a busy worker is not stale. Re-sending a job
    that is in fact alive is harmless: jobs are idempotent and a finished one is skipped.
    """
    cutoff = stale_cutoff(stale_after)
    live = Job.objects.filter(iteration__status__in=ACTIVE, state__in=[JobState.PENDING, JobState.RUNNING])
    stale = list(live.filter(state=JobState.RUNNING, heartbeat_at__lt=cutoff).select_related("iteration"))
    silent_stages = (
        live.values("iteration", "kind")
        .annotate(last=Max("heartbeat_at"))
        .filter(Q(last__lt=cutoff) | Q(last__isnull=True))
        .values_list("iteration", "kind")
    )
    for iteration_id, kind in silent_stages:
        stale += live.filter(iteration_id=iteration_id, kind=kind, state=JobState.PENDING).select_related("iteration")
    with transaction.atomic():
        for job in {job.pk: job for job in stale}.values():
            enqueue(job)
    return len(stale)


def requeue_stale_imports(stale_after: timedelta | None = None) -> int:
    """Re-send the uploads, pending or running, that showed no life for `stale_after`; returns how many.

    Life is `heartbeat_at`: set when the upload is sent, when a worker starts it, by its progress writes and its
    worker's heartbeat thread, so a silent one lost its message or its worker. Sending sets it again, so an
    upload waiting behind a long CPU queue gets one extra message a period, not one a beat. An extra delivery,
    or one whose first worker is alive after all, is harmless: the first delivery to commit wins and the other
    imports nothing (webapp.jobs.imports). Kept apart from `requeue_stale_jobs`, whose count stays the jobs';
    the beat task runs both.

    An upload re-sent IMPORT_MAX_RESENDS times that falls silent again fails with a message saying so: one whose
    worker dies on it every time (too large for the worker's memory, say) is not sent forever.
    """
    silent = Q(heartbeat_at__lt=stale_cutoff(stale_after)) | Q(heartbeat_at__isnull=True)
    stale = list(InstructionImport.objects.filter(silent, state__in=[ImportState.PENDING, ImportState.RUNNING]))
    resent = 0
    with transaction.atomic():
        for upload in stale:
            if upload.resends >= settings.IMPORT_MAX_RESENDS:
                fail_import(upload.pk, GAVE_UP.format(resends=upload.resends))
                continue
            InstructionImport.objects.filter(pk=upload.pk).update(resends=F("resends") + 1)
            enqueue_import(upload)
            resent += 1
    return resent
