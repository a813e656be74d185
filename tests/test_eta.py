"""ETAs: a stage's throughput over its last chunks and its time left, and a draft's estimate from the last
iteration with the same models, scaled by the sizes (instructions × n × claims per answer)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import (
    ClaimFactory,
    InstructionFactory,
    IterationFactory,
    JobFactory,
    ResponseFactory,
)
from webapp.iterations.eta import Chunk, duration_text, estimate, estimate_error, seconds_left, throughput
from webapp.iterations.progress import iteration_progress
from webapp.models import IterationStatus, Job, JobKind, JobState

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_chunks_run_side_by_side_count_together():
    """Two workers, 32-instruction chunks of 100 claims taking 100 s each: 0.64 instructions (2 claims) a second."""
    chunks = [Chunk(32, 100, 100, at(0), at(100)), Chunk(32, 100, 100, at(0), at(100)),
              Chunk(32, 100, 100, at(100), at(200)), Chunk(32, 100, 100, at(100), at(200)),
              Chunk(32, 0, 32, None, None)]  # fmt: skip
    rate = throughput(chunks, now=at(210))
    assert rate.per_second == pytest.approx(0.64) and rate.items_per_second == pytest.approx(2.0)
    assert seconds_left(chunks, rate) == pytest.approx(50)


def test_the_rate_follows_the_last_chunks():
    """Ten slow chunks, then five at twice the speed: the last five alone set the rate."""
    slow = [Chunk(10, 10, 10, at(20 * n), at(20 * (n + 1))) for n in range(10)]
    fast = [Chunk(10, 10, 10, at(200 + 10 * n), at(200 + 10 * (n + 1))) for n in range(5)]
    assert throughput(slow + fast, now=at(250)).per_second == pytest.approx(1.0)


def test_before_a_chunk_finishes_the_running_ones_measure_it_from_their_first_report():
    """Started at 0, loaded its model until 60, first reported 10 claims at 70 and 50 at 150: 0.5 claims/s,
    0.08 instructions/s; counting the loading would say 0.33 claims/s."""
    chunks = [Chunk(32, 50, 200, at(0), None, working=at(70), working_from=10), Chunk(32, 0, 32, None, None)]
    rate = throughput(chunks, now=at(150))
    assert rate.per_second == pytest.approx(0.08) and rate.items_per_second == pytest.approx(0.5)
    assert seconds_left(chunks, rate) == pytest.approx((24 + 32) / 0.08)
    assert throughput([Chunk(32, 0, 32, None, None)], now=at(100)) is None  # nothing started: no estimate
    loading = [Chunk(32, 0, 200, at(0), None)]
    assert throughput(loading, now=at(100)) is None  # no report yet
    once = [Chunk(32, 10, 200, at(0), None, working=at(70), working_from=10)]
    assert throughput(once, now=at(70)) is None  # one report: nothing to measure a rate by


@pytest.mark.django_db
def test_a_training_says_its_time_left_from_its_steps_not_its_model_loading():
    """Found on first use: "about 18 min" for a training that took 7 (the first step waited for the model)."""
    iteration = IterationFactory(status=IterationStatus.TRAINING)
    job = JobFactory(iteration=iteration, kind=JobKind.TRAIN, total=1)
    job.start(total=120)
    Job.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(seconds=300))  # 5 min loading
    job.progress(0)  # the trainer's start record: not work yet
    job.progress(4)
    Job.objects.filter(pk=job.pk).update(working_at=timezone.now() - timedelta(seconds=20))  # 4 steps, 20 s ago
    job.progress(24)  # 20 steps in 20 s since the first report
    (stage,) = iteration_progress(iteration.pk)
    assert stage.seconds_left == pytest.approx(96, rel=0.1)  # 96 steps at 1 step/s, not 96 × 300 / 24 s
    job.start(total=120)  # a retry: it measures itself afresh
    assert Job.objects.get(pk=job.pk).working_at is None


@pytest.mark.django_db
def test_a_stage_whose_chunks_have_not_all_started_counts_them_by_instructions():
    """Found on first use: "label 1536/2845" became 7658/7658 as the chunks started and learnt their claims."""
    iteration = IterationFactory(status=IterationStatus.LABELING)
    jobs = [
        JobFactory(iteration=iteration, kind=JobKind.LABEL, chunk=n, instruction_ids=[1, 2], total=2) for n in range(4)
    ]
    jobs[0].start(total=500)
    jobs[0].progress(250)
    (stage,) = iteration_progress(iteration.pk)
    assert (stage.done, stage.total, stage.not_started) == (250, 500, 3)
    assert stage.percent == 12  # half of one chunk in four
    assert stage.counted == "250 / 500 (+3 chunks not started)"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(42, "42 s"), (125, "2 min"), (3600 * 3 + 1200, "3 h 20 min"), (86400 * 2 + 3600 * 5, "2 d 5 h")],
)
def test_durations_read_as_people_say_them(seconds, text):
    assert duration_text(seconds) == text


def test_an_estimates_error_is_a_share_of_what_happened():
    assert estimate_error(120, 100) == pytest.approx(0.2) and estimate_error(80, 100) == pytest.approx(-0.2)


def run_stage(iteration, kind, seconds: float, totals: list[int], start: float = 0):
    for n, total in enumerate(totals):
        JobFactory(iteration=iteration, kind=kind, chunk=n, total=total, done=total, state=JobState.SUCCEEDED,
                   started_at=at(start), finished_at=at(start + seconds))  # fmt: skip


def past_iteration():
    """4 instructions × 2 answers × 3 claims; generate took 40 s, divide 8, label 120 (0.2 claims/s), train 60."""
    past = IterationFactory(number=1, splitter="rule", status=IterationStatus.DONE, config={"n": 2})
    instructions = InstructionFactory.create_batch(4)
    past.instructions.set(instructions)
    for instruction in instructions:
        for seed in range(2):
            ClaimFactory.create_batch(3, response=ResponseFactory(iteration=past, instruction=instruction, seed=seed))
    run_stage(past, JobKind.GENERATE, 40, [2, 2])
    run_stage(past, JobKind.DIVIDE, 8, [4, 4])
    run_stage(past, JobKind.LABEL, 120, [12, 12])
    run_stage(past, JobKind.TRAIN, 60, [10])
    run_stage(past, JobKind.EVALUATE, 30, [5])
    return past


@pytest.mark.django_db
def test_a_draft_is_estimated_from_the_last_iteration_with_the_same_models_scaled_by_its_sizes():
    past_iteration()
    draft = IterationFactory(number=2, splitter="rule", policy="checkpoints/iteration-1", config={"n": 4})
    draft.instructions.set(InstructionFactory.create_batch(40))  # 10× the instructions, 2× the answers each

    guess = estimate(draft)

    assert guess.claims_per_answer == 3
    by_stage = {stage.kind: (stage.size, stage.seconds) for stage in guess.stages}
    assert by_stage == {
        "generate": (160, pytest.approx(800)),  # 0.2 answers/s then
        "divide": (160, pytest.approx(160)),
        "label": (480, pytest.approx(2400)),  # 40 × 4 × 3 claims at 0.2 claims/s
        "train": (200, pytest.approx(1200)),  # steps scale with the answers: 20×
        "evaluate": (5, pytest.approx(30)),  # the same held-out set
    }
    assert guess.seconds == pytest.approx(800 + 160 + 2400 + 1200 + 30)


@pytest.mark.django_db
def test_no_estimate_without_an_iteration_with_the_same_labeler_splitter_and_engine():
    past_iteration()
    assert estimate(IterationFactory(number=2, splitter="rule", labeler="other-labeler")) is None


@pytest.mark.django_db
def test_a_drafts_page_shows_its_estimate(client, alice):
    past_iteration()
    draft = IterationFactory(number=2, splitter="rule", config={"n": 2})
    draft.instructions.set(InstructionFactory.create_batch(4))
    client.force_login(alice)

    page = client.get(reverse("iteration", args=[2])).content.decode()

    assert "About <strong>4 min</strong> of work" in page and "Iteration 1" in page
    assert '<tr data-stage="label"><td>label</td><td class="number">24 claims</td>' in page


@pytest.mark.parametrize(
    ("items_per_second", "text"),
    [(1650.4, "1,650 answers/s"), (12.46, "12.5 answers/s"), (0.5, "0.5 answers/s"), (0.02, "1.2 answers/min")],
)
def test_a_rate_reads_as_a_plain_number(items_per_second, text):
    """Found on first use: "1.65e+03 answers/s"."""
    from webapp.iterations.eta import Throughput
    from webapp.iterations.progress import StageProgress

    stage = StageProgress("evaluate", 0, 10, 1, 0, 0, 1, rate=Throughput(1.0, items_per_second))
    assert stage.speed == text


def test_no_time_left_is_said_for_a_stage_while_an_earlier_one_still_runs():
    """Found on first use: label said "46 s left" at 1,536 of 2,923 claims while divide still made more (8,567)."""
    from webapp.iterations.eta import Throughput
    from webapp.iterations.progress import StageProgress, without_early_etas

    rate = Throughput(1.0, 10.0)
    divide = StageProgress("divide", 5, 10, 2, 1, 0, 1, rate=rate, seconds_left=30)
    label = StageProgress("label", 1536, 2923, 1, 0, 0, 1, rate=rate, seconds_left=46)
    baseline = StageProgress("baseline", 1, 10, 1, 0, 0, 1, rate=rate, seconds_left=90)
    generate = StageProgress("generate", 10, 10, 1, 1, 0, 0)
    shown = without_early_etas([generate, baseline, divide, label])
    assert [s.time_left for s in shown] == ["", "about 2 min left", "about 30 s left", ""]
