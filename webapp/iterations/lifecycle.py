"""An iteration's transitions: draft → generating → dividing → labeling → combining → reviewing (human gate)
→ training → evaluating → done; any active stage → failed or cancelled, and back by resume.

Each automatic stage is a set of chunk Jobs (instructions split into chunks so many workers share it).
When the last job of a stage succeeds, the stage ends and the next one starts by itself; every move is a
conditional UPDATE (`Iteration.advance`), so of two workers finishing the last chunks at once exactly one
starts the next stage. Creating an iteration is `webapp.iterations.creating.create_iteration`.

The human moves (launch, approve, cancel, resume) are put on the audit trail in their own transaction; the
moves the workers make by themselves are not.
"""

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from labeling.batching import batched
from webapp import limits
from webapp.accounts import audit
from webapp.iterations import baseline
from webapp.iterations.config import config
from webapp.iterations.dispatch import enqueue
from webapp.models import STAGE_OF_JOB, AuditAction, Iteration, IterationStatus, Job, JobKind, JobState

S = IterationStatus
# Each stage's chunk jobs; the generate stage also runs the baseline job when the starting policy needs one.
JOB_OF_STAGE = {stage: kind for kind, stage in STAGE_OF_JOB.items() if kind != JobKind.BASELINE}
KINDS_OF_STAGE = {stage: [k for k, s in STAGE_OF_JOB.items() if s == stage] for stage in JOB_OF_STAGE}
NEXT_STAGE = {
    S.GENERATING: S.DIVIDING,
    S.DIVIDING: S.LABELING,
    S.LABELING: S.COMBINING,
    S.COMBINING: S.REVIEWING,
    S.TRAINING: S.EVALUATING,
    S.EVALUATING: S.DONE,
}
ACTIVE = list(JOB_OF_STAGE)
# Stages that see the whole iteration at once: one job, not one per chunk.
WHOLE_ITERATION_JOBS = {JobKind.COMBINE, JobKind.TRAIN, JobKind.EVALUATE, JobKind.BASELINE}


def start_stage(iteration: Iteration, stage: str) -> None:
    """Create the stage's chunk jobs (those missing) and enqueue every one not yet done. Call in a transaction."""
    kind = JOB_OF_STAGE.get(stage)
    if kind is None:
        return
    ids = sorted(iteration.instructions.values_list("pk", flat=True))
    size = max(len(ids), 1) if kind in WHOLE_ITERATION_JOBS else config(iteration)["chunk_size"]
    chunks = list(batched(ids, size)) or [[]]
    jobs = [
        Job(iteration=iteration, kind=kind, chunk=n, instruction_ids=chunk, total=len(chunk))
        for n, chunk in enumerate(chunks)
    ]
    if stage == S.GENERATING and baseline.needs_job(iteration):
        jobs.append(Job(iteration=iteration, kind=JobKind.BASELINE, chunk=0, instruction_ids=[], total=0))
    Job.objects.bulk_create(jobs, ignore_conflicts=True)
    for job in (
        Job.objects.filter(iteration=iteration, kind__in=KINDS_OF_STAGE[stage])
        .exclude(state=JobState.SUCCEEDED)
        .select_related("iteration")
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
        audit.record(AuditAction.LAUNCH, iteration=iteration, target=str(iteration))
    return True


def advance_if_stage_done(iteration: Iteration, kind: str) -> bool:
    """Start the next stage when every job of this one has succeeded; only one caller ever wins."""
    stage = STAGE_OF_JOB[kind]
    if (
        Job.objects.filter(iteration=iteration, kind__in=KINDS_OF_STAGE[stage])
        .exclude(state=JobState.SUCCEEDED)
        .exists()
    ):
        return False
    with transaction.atomic():
        if not iteration.advance(stage, NEXT_STAGE[stage]):
            return False
        start_stage(iteration, NEXT_STAGE[stage])
    return True


def fail(iteration: Iteration, error: str) -> bool:
    """Any active stage → failed, remembering the stage so resume can restart it."""
    won = Iteration.objects.filter(pk=iteration.pk, status__in=ACTIVE).update(
        stopped_stage=F("status"), status=S.FAILED, error=error[: limits.ERROR], updated_at=timezone.now()
    )
    return bool(won)


def cancel(iteration: Iteration) -> bool:
    """Stop an active iteration: its pending jobs are cancelled and running ones stop writing."""
    with transaction.atomic():
        won = Iteration.objects.filter(pk=iteration.pk, status__in=ACTIVE).update(
            stopped_stage=F("status"), status=S.CANCELLED, updated_at=timezone.now()
        )
        if won:
            Job.objects.filter(iteration=iteration, state__in=[JobState.PENDING, JobState.RUNNING]).update(
                state=JobState.CANCELLED, finished_at=timezone.now()
            )
            iteration.refresh_from_db(fields=["stopped_stage"])
            audit.record(AuditAction.CANCEL, iteration=iteration, target=str(iteration), stage=iteration.stopped_stage)
    return bool(won)


def resume(iteration: Iteration) -> bool:
    """failed/cancelled → the stage that stopped; its unfinished jobs run again, finished ones are kept."""
    iteration.refresh_from_db()
    stage, stopped = iteration.stopped_stage, iteration.status
    if stopped not in (S.FAILED, S.CANCELLED) or stage not in ACTIVE:
        return False
    with transaction.atomic():
        if not iteration.advance(stopped, stage, error="", stopped_stage=""):
            return False
        Job.objects.filter(iteration=iteration, kind__in=KINDS_OF_STAGE[stage]).exclude(
            state=JobState.SUCCEEDED
        ).update(state=JobState.PENDING, error="")  # `done` stays: progress never goes back (Job.progress)
        start_stage(iteration, stage)
        audit.record(AuditAction.RESUME, iteration=iteration, target=str(iteration), stage=stage, was=stopped)
    advance_if_stage_done(iteration, JOB_OF_STAGE[stage])
    return True


def approve(iteration: Iteration) -> bool:
    """The human gate: reviewing → training. Staff only; the view checks that."""
    with transaction.atomic():
        if not iteration.advance(S.REVIEWING, S.TRAINING):
            return False
        start_stage(iteration, S.TRAINING)
        audit.record(AuditAction.APPROVE, iteration=iteration, target=str(iteration))
    return True
