"""Celery tasks: one that runs a Job, one that runs an upload's import, one for the watchdog. The base tasks
own retries and final failure.

Tasks are acknowledged late (a killed worker's task is delivered again), retried with backoff only on
errors that pass by themselves (a database or broker connection dropping), and idempotent, so a duplicate
delivery is harmless. Work is sent by name (webapp.iterations.dispatch), so nothing imports this module but Celery.
"""

import redis.exceptions
from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from webapp.jobs import imports, runner, watchdog

TRANSIENT = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


class RetryingTask(Task):
    """Transient errors are retried with backoff; the task is acknowledged only once it has run."""

    autoretry_for = TRANSIENT
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 6
    acks_late = True


class JobTask(RetryingTask):
    """Runs a Job by id. Any error but a transient one, or a transient one that outlasts the retries, fails the
    job and its iteration (`on_failure`), which resume can restart."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        runner.fail_job(args[0], exc)


@shared_task(base=JobTask, bind=True, name="webapp.tasks.run_job")
def run_job(self, job_id: int) -> None:
    runner.run_job(job_id, worker=self.request.hostname or "")


class ImportTask(RetryingTask):
    """Runs an upload's import by id. An unexpected error, or a transient one that outlasts the retries, fails
    the import with that error (`on_failure`); a bad line or zip member fails it inside `run_import`."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        imports.fail_import(args[0], exc)


@shared_task(base=ImportTask, bind=True, name="webapp.tasks.run_import")
def run_import(self, import_id: int) -> None:
    imports.run_import(import_id, worker=self.request.hostname or "")


@shared_task(name="webapp.tasks.requeue_stale_jobs")
def requeue_stale_jobs() -> int:
    """Periodic (celery beat): re-send the jobs and the uploads whose worker died or whose message was lost;
    returns how many of both. The name is older than the uploads' part and stays, as beat schedules hold it."""
    return watchdog.requeue_stale_jobs() + watchdog.requeue_stale_imports()
