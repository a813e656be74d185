"""The job runner and the Celery task around it: which body runs, and who owns retries and final failure.

The task runs here through Celery's own `apply` (in this process, hooks included); the real workers, broker
restarts and kill -9 are in test_pipeline.py and bench/pg_restart.py.
"""

import pytest
from django.db import OperationalError

from tests.factories import IterationFactory, JobFactory
from webapp.iterations.config import STRATEGIES
from webapp.jobs import runner
from webapp.models import IterationStatus, JobKind, JobState
from webapp.tasks import TRANSIENT, run_job


def test_every_strategy_has_a_body_for_every_job_kind():
    assert set(runner.WORK) == set(STRATEGIES)
    assert all(set(work) == set(JobKind.values) for work in runner.WORK.values())


def generating_job(**config):
    iteration = IterationFactory(status=IterationStatus.GENERATING, config=config)
    return JobFactory(iteration=iteration, kind=JobKind.GENERATE, chunk=0, total=0)


@pytest.mark.django_db
def test_a_lasting_error_fails_the_job_and_its_iteration_once_without_retrying():
    job = generating_job(strategy="no-such-strategy")
    result = run_job.apply(args=[job.pk])
    assert result.failed()
    job.refresh_from_db()
    job.iteration.refresh_from_db()
    assert job.state == JobState.FAILED
    assert job.error == (
        "generate chunk 0: ValueError: unknown strategy 'no-such-strategy'; "
        "expected one of rlaifv, whole_response, self_reward"
    )
    assert (job.iteration.status, job.iteration.stopped_stage) == (IterationStatus.FAILED, IterationStatus.GENERATING)
    assert job.iteration.error == job.error


@pytest.mark.django_db
def test_a_transient_error_is_retried_and_fails_the_iteration_only_when_the_retries_run_out(monkeypatch):
    attempts = []

    def database_away(job):
        attempts.append(job.pk)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setitem(runner.WORK["rlaifv"], JobKind.GENERATE, database_away)
    job = generating_job()
    result = run_job.apply(args=[job.pk])
    assert OperationalError in TRANSIENT
    assert len(attempts) == 1 + run_job.max_retries
    assert result.failed()
    job.iteration.refresh_from_db()
    assert job.iteration.status == IterationStatus.FAILED
    assert "OperationalError: server closed the connection unexpectedly" in job.iteration.error


@pytest.mark.django_db
def test_a_transient_error_that_passes_leaves_nothing_failed(monkeypatch):
    attempts = []

    def flaky(job):
        attempts.append(job.pk)
        if len(attempts) < 3:
            raise OperationalError("connection refused")
        job.succeed()

    monkeypatch.setitem(runner.WORK["rlaifv"], JobKind.GENERATE, flaky)
    job = generating_job()
    assert run_job.apply(args=[job.pk]).successful()
    job.refresh_from_db()
    job.iteration.refresh_from_db()
    assert len(attempts) == 3
    assert job.state == JobState.SUCCEEDED
    assert job.iteration.status == IterationStatus.DIVIDING  # the stage's last job started the next stage


@pytest.mark.django_db
def test_a_job_that_is_done_or_whose_stage_is_over_is_skipped(monkeypatch):
    ran = []
    monkeypatch.setitem(runner.WORK["rlaifv"], JobKind.GENERATE, ran.append)
    done = generating_job()
    done.succeed()
    cancelled = generating_job()
    cancelled.iteration.status = IterationStatus.CANCELLED
    cancelled.iteration.save()
    for job in (done, cancelled):
        runner.run_job(job.pk)
    runner.run_job(10**9)  # no such job: a message for a deleted iteration
    assert ran == []
