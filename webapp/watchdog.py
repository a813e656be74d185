"""The stale-job watchdog: re-send jobs whose worker died or whose message was lost (a broker restart).

Run periodically by celery beat (`webapp.tasks.requeue_stale_jobs`) and by `run_iteration --wait`.
"""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from webapp.dispatch import enqueue
from webapp.lifecycle import ACTIVE
from webapp.models import Job, JobState


def requeue_stale_jobs(stale_after: timedelta | None = None) -> int:
    """Re-send the stale jobs of active iterations; returns how many.

    A running job with no heartbeat for `stale_after` lost its worker. Pending jobs are re-sent only when
    their whole stage is silent that long: a long queue behind a busy worker is not stale. Re-sending a job
    that is in fact alive is harmless: jobs are idempotent and a finished one is skipped.
    """
    cutoff = timezone.now() - (stale_after or timedelta(seconds=settings.STALE_JOB_SECONDS))
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
