"""An iteration's life: draft → generating → dividing → labeling → combining → reviewing (human gate)
→ training → evaluating → done; any active stage → failed (resumable) or cancelled.

Each automatic stage is a set of chunk Jobs (instructions split into chunks so many workers share it).
When the last job of a stage succeeds, the stage ends and the next one starts by itself; the move is a
conditional UPDATE, so of two workers finishing the last chunks at once exactly one starts the next stage.
"""

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from webapp.models import Iteration, IterationStatus, Job, JobKind, JobState

S = IterationStatus
JOB_OF_STAGE = {
    S.GENERATING: JobKind.GENERATE,
    S.DIVIDING: JobKind.DIVIDE,
    S.LABELING: JobKind.LABEL,
    S.COMBINING: JobKind.COMBINE,
    S.TRAINING: JobKind.TRAIN,
    S.EVALUATING: JobKind.EVALUATE,
}
STAGE_OF_JOB = {kind: stage for stage, kind in JOB_OF_STAGE.items()}
NEXT_STAGE = {
    S.GENERATING: S.DIVIDING,
    S.DIVIDING: S.LABELING,
    S.LABELING: S.COMBINING,
    S.COMBINING: S.REVIEWING,
    S.TRAINING: S.EVALUATING,
    S.EVALUATING: S.DONE,
}
ACTIVE = list(JOB_OF_STAGE)
WHOLE_ITERATION_JOBS = {JobKind.COMBINE, JobKind.TRAIN, JobKind.EVALUATE}

DEFAULT_CONFIG = {
    "n": 10,
    "temperature": 0.7,
    "top_p": 1.0,
    "max_new_tokens": 512,
    "seed": 0,
    "pairs_per_instruction": 2,
    "length_balance": True,
    "chunk_size": None,  # None: settings.CHUNK_SIZE
    "generate_batch": 8,
    "label_batch": 512,
}


def config(iteration: Iteration) -> dict:
    """The iteration's settings over the defaults."""
    merged = DEFAULT_CONFIG | (iteration.config or {})
    merged["chunk_size"] = merged["chunk_size"] or settings.CHUNK_SIZE
    return merged


def queue_for(job: Job) -> str:
    """Model work goes to the GPU queue; the rule-based splitter and combine run on CPU workers."""
    if job.kind == JobKind.COMBINE or (job.kind == JobKind.DIVIDE and job.iteration.splitter == "rule"):
        return "cpu"
    return "gpu"


def enqueue(job: Job) -> None:
    """Mark the job pending and send its task once the surrounding transaction commits."""
    from webapp.tasks import TASK_OF_JOB

    task_id = str(uuid.uuid4())
    Job.objects.filter(pk=job.pk).update(
        state=JobState.PENDING, heartbeat_at=timezone.now(), error="", celery_task_id=task_id
    )
    TASK_OF_JOB[job.kind].apply_async_on_commit(args=[job.pk], queue=queue_for(job), task_id=task_id)


def start_stage(iteration: Iteration, stage: str) -> None:
    """Create the stage's chunk jobs (those missing) and enqueue every one not yet done. Call in a transaction."""
    kind = JOB_OF_STAGE.get(stage)
    if kind is None:
        return
    ids = sorted(iteration.instructions.values_list("pk", flat=True))
    size = max(len(ids), 1) if kind in WHOLE_ITERATION_JOBS else config(iteration)["chunk_size"]
    chunks = [ids[i : i + size] for i in range(0, len(ids), size)] or [[]]
    Job.objects.bulk_create(
        [
            Job(iteration=iteration, kind=kind, chunk=n, instruction_ids=chunk, total=len(chunk))
            for n, chunk in enumerate(chunks)
        ],
        ignore_conflicts=True,
    )
    for job in (
        Job.objects.filter(iteration=iteration, kind=kind).exclude(state=JobState.SUCCEEDED).select_related("iteration")
    ):
        enqueue(job)


def launch(iteration: Iteration) -> bool:
    """draft → generating; False when it was not a draft (already launched by someone else)."""
    if not iteration.instructions.exists():
        raise ValueError(f"{iteration} has no instructions to run on")
    with transaction.atomic():
        if not iteration.advance(S.DRAFT, S.GENERATING, error=""):
            return False
        start_stage(iteration, S.GENERATING)
    return True


def advance_if_stage_done(iteration: Iteration, kind: str) -> bool:
    """Start the next stage when every job of this one has succeeded; only one caller ever wins."""
    stage = STAGE_OF_JOB[kind]
    if Job.objects.filter(iteration=iteration, kind=kind).exclude(state=JobState.SUCCEEDED).exists():
        return False
    with transaction.atomic():
        if not iteration.advance(stage, NEXT_STAGE[stage]):
            return False
        start_stage(iteration, NEXT_STAGE[stage])
    return True


def fail(iteration: Iteration, error: str) -> bool:
    """Any active stage → failed, remembering the stage so resume can restart it."""
    won = Iteration.objects.filter(pk=iteration.pk, status__in=ACTIVE).update(
        failed_status=F("status"), status=S.FAILED, error=error[:10_000], updated_at=timezone.now()
    )
    return bool(won)


def cancel(iteration: Iteration) -> bool:
    """Stop an active iteration: its pending jobs are cancelled and running ones stop writing."""
    with transaction.atomic():
        won = Iteration.objects.filter(pk=iteration.pk, status__in=ACTIVE).update(
            failed_status=F("status"), status=S.CANCELLED, updated_at=timezone.now()
        )
        if won:
            Job.objects.filter(iteration=iteration, state__in=[JobState.PENDING, JobState.RUNNING]).update(
                state=JobState.CANCELLED, finished_at=timezone.now()
            )
    return bool(won)


def resume(iteration: Iteration) -> bool:
    """failed/cancelled → the stage that stopped; its unfinished jobs run again, finished ones are kept."""
    iteration.refresh_from_db()
    stage, stopped = iteration.failed_status, iteration.status
    if stopped not in (S.FAILED, S.CANCELLED) or stage not in ACTIVE:
        return False
    with transaction.atomic():
        if not iteration.advance(stopped, stage, error="", failed_status=""):
            return False
        Job.objects.filter(iteration=iteration, kind=JOB_OF_STAGE[stage]).exclude(state=JobState.SUCCEEDED).update(
            state=JobState.PENDING, error="", done=0
        )
        start_stage(iteration, stage)
    advance_if_stage_done(iteration, JOB_OF_STAGE[stage])
    return True


def approve(iteration: Iteration) -> bool:
    """The human gate: reviewing → training. Staff only; the view checks that."""
    with transaction.atomic():
        if not iteration.advance(S.REVIEWING, S.TRAINING):
            return False
        start_stage(iteration, S.TRAINING)
    return True


def requeue_stale_jobs(stale_after: timedelta | None = None) -> int:
    """Re-send jobs whose worker died or whose message was lost (a broker restart).

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
