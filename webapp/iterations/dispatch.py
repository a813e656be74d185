"""Sending a job to the workers: which queue it needs, and its task, sent by name once the transaction commits.

Sending by name keeps the task module (and Celery's worker side) out of everything that only starts work.
"""

import uuid

from django.db import transaction
from django.utils import timezone

from webapp.celery import app
from webapp.iterations.config import gpus_for
from webapp.models import InstructionImport, Job, JobKind, JobState

RUN_JOB_TASK = "webapp.tasks.run_job"
RUN_IMPORT_TASK = "webapp.tasks.run_import"


def queue_name(gpus: int) -> str:
    """Queues are named by the GPUs a task needs: `cpu`, `gpu` (one), `gpu-x4` (a model spread over four)."""
    if gpus == 0:
        return "cpu"
    return "gpu" if gpus == 1 else f"gpu-x{gpus}"


def queue_for(job: Job) -> str:
    """The queue of the workers that can hold the job's models: combine and the rule-based splitter load none and
    run on CPU workers; a 7B policy's generate goes to `gpu`, a 34B labeler spread over four GPUs to `gpu-x4`
    (the iteration's engine options say how many each model needs)."""
    return queue_name(gpus_for(job.iteration, job.kind))


def enqueue(job: Job) -> None:
    """Mark the job pending and send its task once the surrounding transaction commits.

    A task sent before the commit could start before its job row is visible; one sent after a rollback
    would run a job that does not exist.
    """
    task_id = str(uuid.uuid4())
    Job.objects.filter(pk=job.pk).update(
        state=JobState.PENDING, heartbeat_at=timezone.now(), error="", celery_task_id=task_id
    )
    queue = queue_for(job)
    transaction.on_commit(lambda: app.send_task(RUN_JOB_TASK, args=[job.pk], queue=queue, task_id=task_id))


def enqueue_import(upload: InstructionImport) -> None:
    """Send an upload's import to the CPU queue once the transaction that saved it commits: a new upload, or one
    the watchdog re-sends. Sending counts as a sign of life, so the watchdog waits a whole period for a worker to
    take it; its state is left alone, and a worker still running it finishes it (the first to commit wins)."""
    InstructionImport.objects.filter(pk=upload.pk).update(heartbeat_at=timezone.now())
    transaction.on_commit(lambda: app.send_task(RUN_IMPORT_TASK, args=[upload.pk], queue="cpu"))


def stage_queues(iteration) -> list[tuple[str, str]]:
    """Each stage's queue, for the iteration page; "not routable" where its engine options are wrong."""
    queues = []
    for kind in JobKind.values:
        try:
            queues.append((kind, queue_name(gpus_for(iteration, kind))))
        except ValueError:
            queues.append((kind, "not routable: check the engine options"))
    return queues
