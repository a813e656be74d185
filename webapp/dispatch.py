"""Sending a job to the workers: which queue it needs, and its task, sent by name once the transaction commits.

Sending by name keeps the task module (and Celery's worker side) out of everything that only starts work.
"""

import uuid

from django.db import transaction
from django.utils import timezone

from webapp.celery import app
from webapp.config import splitter
from webapp.models import InstructionImport, Job, JobKind, JobState

RUN_JOB_TASK = "webapp.tasks.run_job"
RUN_IMPORT_TASK = "webapp.tasks.run_import"


def queue_for(job: Job) -> str:
    """Model work goes to the GPU queue; combine and the rule-based splitter run on CPU workers."""
    if job.kind == JobKind.COMBINE or (job.kind == JobKind.DIVIDE and splitter(job.iteration).model is None):
        return "cpu"
    return "gpu"


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
    """Send an upload's import to the CPU queue once the transaction that saved it commits."""
    transaction.on_commit(lambda: app.send_task(RUN_IMPORT_TASK, args=[upload.pk], queue="cpu"))
