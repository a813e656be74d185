"""Celery tasks: each takes a Job's primary key and calls `stages.run_job`; nothing else lives here.

Tasks are acknowledged late (a killed worker's task is delivered again), retried with backoff only on
errors that pass by themselves (a database or broker connection dropping), and idempotent, so a
duplicate delivery is harmless.
"""

import redis.exceptions
from celery import shared_task
from django.db import InterfaceError, OperationalError

from webapp import lifecycle, stages
from webapp.models import JobKind

TRANSIENT = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)
RETRY = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 6,
    "acks_late": True,
}


def _run(task, job_id: int) -> None:
    final = task.request.retries >= task.max_retries
    stages.run_job(job_id, TRANSIENT, final_attempt=final, worker=task.request.hostname or "")


@shared_task(bind=True, **RETRY)
def generate_chunk(self, job_id: int) -> None:
    _run(self, job_id)


@shared_task(bind=True, **RETRY)
def divide_chunk(self, job_id: int) -> None:
    _run(self, job_id)


@shared_task(bind=True, **RETRY)
def label_chunk(self, job_id: int) -> None:
    _run(self, job_id)


@shared_task(bind=True, **RETRY)
def combine_pairs(self, job_id: int) -> None:
    _run(self, job_id)


@shared_task(bind=True, **RETRY)
def train_policy(self, job_id: int) -> None:
    _run(self, job_id)


@shared_task(bind=True, **RETRY)
def evaluate_policy(self, job_id: int) -> None:
    _run(self, job_id)


@shared_task
def requeue_stale_jobs() -> int:
    """Periodic (celery beat): re-send jobs whose worker died or whose message was lost."""
    return lifecycle.requeue_stale_jobs()


TASK_OF_JOB = {
    JobKind.GENERATE: generate_chunk,
    JobKind.DIVIDE: divide_chunk,
    JobKind.LABEL: label_chunk,
    JobKind.COMBINE: combine_pairs,
    JobKind.TRAIN: train_policy,
    JobKind.EVALUATE: evaluate_policy,
}
