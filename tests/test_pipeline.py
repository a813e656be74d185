"""Iterations on real Celery workers (subprocesses) against the real database and broker, on tiny models.

No eager mode: tasks travel through the broker to workers that load the tiny models, exactly as in production.
"""

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command

from labeling.combine import ScoredResponse, make_pairs
from labeling.generate import candidate_seeds
from tests.rows import snapshot
from webapp.iterations import lifecycle
from webapp.jobs.base import seed_key
from webapp.jobs.watchdog import requeue_stale_jobs
from webapp.models import (
    Claim,
    Instruction,
    Iteration,
    IterationStatus,
    Job,
    JobState,
    PreferencePair,
    Response,
    ResponseStatus,
    Verdict,
    response_scores,
)

pytestmark = pytest.mark.slow
needs_shared_broker = pytest.mark.skipif(
    settings.CELERY_BROKER_URL.startswith("filesystem://"),
    reason="the folder broker of the demo serves one worker; set CELERY_BROKER_URL=redis://… (CI does)",
)

CONFIG = {"n": 4, "max_new_tokens": 16, "chunk_size": 4, "temperature": 1.0}


def new_iteration(number: int, labeler: str = "tiny-llava", **config) -> Iteration:
    if not Instruction.objects.exists():
        call_command("load_samples")
    iteration = Iteration.objects.create(number=number, policy="tiny-llava", labeler=labeler, config=CONFIG | config)
    iteration.instructions.set(Instruction.objects.filter(split="train"))
    return iteration


def wait_for(iteration: Iteration, *statuses: str, processes=None, timeout: float = 300) -> Iteration:
    """Follow the iteration as `run_iteration --wait` does (including the stale-job watchdog)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        requeue_stale_jobs(timedelta(seconds=4))
        iteration.refresh_from_db()
        if iteration.status in statuses:
            return iteration
        time.sleep(0.3)
    logs = "\n".join(processes.log(p.name)[-3000:] for p in processes.procs) if processes else ""
    pytest.fail(f"{iteration} stuck in {iteration.status} ({iteration.error}); logs:\n{logs}")


def assert_complete(iteration: Iteration) -> None:
    """Every row the stages promise is there, and the pairs are what labeling.combine makes of the verdicts."""
    n_instructions = iteration.instructions.count()
    responses = Response.objects.filter(iteration=iteration)
    assert responses.count() == n_instructions * CONFIG["n"]
    assert not responses.exclude(status__in=[ResponseStatus.LABELED, ResponseStatus.SPLIT_FAILED]).exists()
    claims = Claim.objects.filter(response__iteration=iteration)
    assert claims.count() > 0
    assert Verdict.objects.filter(claim__response__iteration=iteration).count() == claims.count()
    assert not Job.objects.filter(iteration=iteration).exclude(state=JobState.SUCCEEDED).exists()
    scored = [
        ScoredResponse(r.pk, r.instruction_id, r.text, r.n_rejected)
        for r in response_scores(responses.filter(status=ResponseStatus.LABELED))
    ]
    expected = make_pairs(scored, k=2, seed=0)
    stored = PreferencePair.objects.filter(iteration=iteration)
    assert sorted((p.instruction_id, p.chosen_id, p.rejected_id, p.score_gap) for p in stored) == sorted(
        (p.instruction_id, p.chosen_id, p.rejected_id, p.score_gap) for p in expected
    )
    assert stored.count() > 0


def test_a_full_iteration_runs_to_the_review_gate(processes):
    processes.worker()
    iteration = new_iteration(1)
    assert lifecycle.launch(iteration)
    assert not lifecycle.launch(iteration)  # a second launch does nothing
    wait_for(iteration, IterationStatus.REVIEWING, IterationStatus.FAILED, processes=processes)
    assert iteration.status == IterationStatus.REVIEWING, iteration.error
    assert_complete(iteration)
    assert Job.objects.filter(iteration=iteration, kind="generate").count() == 4  # 16 instructions / chunks of 4
    for instruction in iteration.instructions.all():  # each instruction's own seeds (labeling.generate)
        seeds = set(
            Response.objects.filter(iteration=iteration, instruction=instruction).values_list("seed", flat=True)
        )
        assert seeds == set(candidate_seeds(4, 0, seed_key(instruction)))


@needs_shared_broker
def test_two_workers_share_the_chunks_and_write_the_same_rows_as_one(processes):
    processes.worker("w1")
    one = new_iteration(1, chunk_size=2)
    lifecycle.launch(one)
    wait_for(one, IterationStatus.REVIEWING, processes=processes)
    processes.wait_ready(processes.worker("w2"))
    two = new_iteration(2, chunk_size=2)
    lifecycle.launch(two)
    wait_for(two, IterationStatus.REVIEWING, processes=processes)
    assert snapshot(one) == snapshot(two)
    workers = set(Job.objects.filter(iteration=two).values_list("worker", flat=True))
    assert {w.split("@")[0] for w in workers} == {"w1", "w2"}


def test_a_worker_killed_while_labeling_loses_and_duplicates_nothing(processes):
    # Labeling one claim per call on the small model makes the stage last long enough to kill it midway.
    slow = {"chunk_size": 2, "label_batch": 1}
    processes.worker("calm")
    undisturbed = new_iteration(1, labeler="small-llava", **slow)
    lifecycle.launch(undisturbed)
    wait_for(undisturbed, IterationStatus.REVIEWING, processes=processes)
    processes.stop_all()

    victim = processes.worker("victim")
    crashed = new_iteration(2, labeler="small-llava", **slow)
    lifecycle.launch(crashed)
    label_jobs = Job.objects.filter(iteration=crashed, kind="label")
    deadline = time.monotonic() + 240
    while not label_jobs.filter(state=JobState.SUCCEEDED).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    processes.kill(victim)
    assert label_jobs.exclude(state=JobState.SUCCEEDED).exists(), "labeling finished before the kill"

    processes.worker("rescuer")
    wait_for(crashed, IterationStatus.REVIEWING, processes=processes)
    assert snapshot(crashed) == snapshot(undisturbed)
    assert_complete(crashed)


def test_a_chunk_that_keeps_failing_fails_the_iteration_and_resume_finishes_it(processes):
    processes.worker()
    iteration = new_iteration(1, labeler="no-such-labeler")
    lifecycle.launch(iteration)
    wait_for(iteration, IterationStatus.FAILED, processes=processes)
    # the labeler is first loaded by the baseline (the starting policy judged beside the generate stage)
    assert iteration.stopped_stage == IterationStatus.GENERATING
    assert "baseline chunk 0" in iteration.error
    assert "cannot load model 'no-such-labeler' with engine transformers" in iteration.error
    assert "no model folder 'no-such-labeler' under MODELS_DIR" in iteration.error
    assert Job.objects.filter(iteration=iteration, kind="baseline", state=JobState.FAILED).exists()

    Iteration.objects.filter(pk=iteration.pk).update(labeler="tiny-llava")  # the cause, fixed
    assert lifecycle.resume(iteration)
    wait_for(iteration, IterationStatus.REVIEWING, processes=processes)
    assert_complete(iteration)


def test_a_cancelled_iteration_stops_and_can_resume(processes):
    iteration = new_iteration(1)
    lifecycle.launch(iteration)  # no worker yet: everything waits in the queue
    assert lifecycle.cancel(iteration)
    assert not Job.objects.filter(iteration=iteration).exclude(state=JobState.CANCELLED).exists()
    processes.worker()
    time.sleep(3)
    assert not Response.objects.filter(iteration=iteration).exists()
    assert lifecycle.resume(iteration)
    wait_for(iteration, IterationStatus.REVIEWING, processes=processes)
    assert_complete(iteration)


@pytest.fixture
def own_redis(tmp_path):
    """A Redis server of the test's own, on a free port, that the test may restart (nothing kept on disk)."""
    import shutil
    import socket
    import subprocess

    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    class Server:
        url = f"redis://127.0.0.1:{port}/0"
        proc = None

        def start(self):
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(tmp_path)],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    return
                except OSError:
                    time.sleep(0.05)
            raise RuntimeError("redis-server did not start")

        def stop(self):
            self.proc.kill()
            self.proc.wait()

    server = Server()
    server.start()
    yield server
    server.stop()


def test_a_redis_restart_mid_stage_loses_and_duplicates_nothing(processes, own_redis, tmp_path):
    from tests.workers import Processes

    slow = {"chunk_size": 2, "label_batch": 1}
    on_own_redis = Processes(tmp_path, processes.env["MODELS_DIR"], broker_url=own_redis.url)
    try:
        on_own_redis.worker("w1")
        undisturbed = new_iteration(1, labeler="small-llava", **slow)
        launcher = on_own_redis.manage("launch1", "run_iteration", "--iteration", "1", "--wait", "--poll", "0.5")
        assert launcher.wait(300) == 0, on_own_redis.log("launch1")

        restarted = new_iteration(2, labeler="small-llava", **slow)
        launcher = on_own_redis.manage("launch2", "run_iteration", "--iteration", "2", "--wait", "--poll", "0.5")
        label_jobs = Job.objects.filter(iteration=restarted, kind="label")
        deadline = time.monotonic() + 240
        while not label_jobs.filter(state=JobState.SUCCEEDED).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        own_redis.stop()  # every queued message is lost: this Redis keeps nothing on disk
        assert label_jobs.exclude(state=JobState.SUCCEEDED).exists(), "labeling finished before the restart"
        time.sleep(1)
        own_redis.start()
        assert launcher.wait(300) == 0, on_own_redis.log("launch2") + on_own_redis.log("w1")
    finally:
        on_own_redis.stop_all()
    restarted.refresh_from_db()
    assert restarted.status == IterationStatus.REVIEWING
    assert snapshot(restarted) == snapshot(undisturbed)
    assert_complete(restarted)
