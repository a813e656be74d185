"""A running job's heartbeat: refreshed while its work runs, left alone once it ends, and kept up through a
dropped database connection (a blip must not make a live job look dead to the watchdog)."""

import time

import pytest
from django.db import connection

from tests.factories import JobFactory
from tests.threads import eventually
from webapp.jobs.heartbeat import heartbeat
from webapp.models import Job, JobState


def beats(job: Job) -> list:
    return list(Job.objects.filter(pk=job.pk).values_list("heartbeat_at", flat=True))


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_refreshes_a_running_job_and_leaves_a_finished_one_alone():
    job = JobFactory(state=JobState.RUNNING)
    finished = JobFactory(state=JobState.SUCCEEDED)
    with heartbeat(Job.objects.filter(pk__in=[job.pk, finished.pk], state=JobState.RUNNING), every=0.05):
        time.sleep(0.3)
        first = beats(job)[0]
        time.sleep(0.3)
        assert first is not None and beats(job)[0] > first
    assert beats(finished) == [finished.heartbeat_at]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="drops a PostgreSQL connection")
@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_keeps_beating_after_its_connection_is_dropped():
    job = JobFactory(state=JobState.RUNNING)
    with heartbeat(Job.objects.filter(pk=job.pk, state=JobState.RUNNING), every=0.05):
        time.sleep(0.3)
        with connection.cursor() as cursor:  # the heartbeat thread's is the other connection to the test database
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.rowcount == 1
        dropped = time.time()
        eventually(lambda: beats(job)[0].timestamp() > dropped + 0.1)
