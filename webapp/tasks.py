"""Celery tasks: one that runs a Job, one for the watchdog. The base task owns retries and final failure.

Tasks are acknowledged late (a killed worker's task is delivered again), retried with backoff only on
errors that pass by themselves (a database or broker connection dropping), and idempotent, so a duplicate
delivery is harmless. Work is sent by name (webapp.dispatch), so nothing imports this module but Celery.
"""

import redis.exceptions
from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from webapp import watchdog
from webapp.jobs import runner

TRANSIENT = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


class JobTask(Task):
    """Runs a Job by id. Transient errors are retried with backoff; any other error, or a transient one that
    outlasts the retries, fails the job and its iteration (`on_failure`), which resume can restart."""

    autoretry_for = TRANSIENT
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 6
    acks_late = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        runner.fail_job(args[0], exc)


@shared_task(base=JobTask, bind=True, name="webapp.tasks.run_job")
def run_job(self, job_id: int) -> None:
    runner.run_job(job_id, worker=self.request.hostname or "")


@shared_task(name="webapp.tasks.requeue_stale_jobs")
def requeue_stale_jobs() -> int:
    """Periodic (celery beat): re-send jobs whose worker died or whose message was lost."""
    return watchdog.requeue_stale_jobs()
