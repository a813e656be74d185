"""The loop's starting point: the starting policy evaluated beside the generate stage, once per way of measuring
it, and the monitors that compare the trained policy's answers with it."""

import pytest
from django.urls import reverse

from tests.factories import InstructionFactory, IterationFactory, JobFactory
from webapp.dashboard.comparison import compare
from webapp.iterations import lifecycle
from webapp.iterations.baseline import evaluation_split, measurement, start_for
from webapp.iterations.monitors import monitor
from webapp.models import Iteration, IterationStatus, Job, JobKind, JobState, Split

pytestmark = pytest.mark.django_db


def draft(**fields) -> Iteration:
    iteration = IterationFactory(**fields)
    iteration.instructions.add(InstructionFactory(), InstructionFactory())
    return iteration


def evaluation(iteration: Iteration, **figures) -> dict:
    return {"details": {"measurement": measurement(iteration)}} | figures


def test_launch_runs_the_baseline_beside_the_generate_stage():
    InstructionFactory(split=Split.HELDOUT)
    iteration = draft()
    assert lifecycle.launch(iteration)
    kinds = sorted(Job.objects.filter(iteration=iteration).values_list("kind", flat=True))
    assert kinds == ["baseline", "generate"]

    generate = Job.objects.get(iteration=iteration, kind=JobKind.GENERATE)
    generate.succeed()
    assert not lifecycle.advance_if_stage_done(iteration, JobKind.GENERATE)  # the baseline still runs
    Job.objects.get(iteration=iteration, kind=JobKind.BASELINE).succeed()
    assert lifecycle.advance_if_stage_done(iteration, JobKind.BASELINE)
    iteration.refresh_from_db()
    assert iteration.status == IterationStatus.DIVIDING


def test_no_test_split_no_baseline():
    iteration = draft()
    lifecycle.launch(iteration)
    assert not Job.objects.filter(iteration=iteration, kind=JobKind.BASELINE).exists()


def test_an_earlier_evaluation_of_the_policy_measured_the_same_way_is_copied():
    InstructionFactory(split=Split.HELDOUT)
    first = IterationFactory(status=IterationStatus.DONE, checkpoint="iteration-1")
    first.metrics = {"eval": evaluation(first, truth_chair_s=0.2, repetition_share=0.4)}
    first.save()
    second = draft(policy="iteration-1")
    lifecycle.launch(second)
    second.refresh_from_db()
    assert not Job.objects.filter(iteration=second, kind=JobKind.BASELINE).exists()
    assert second.metrics["baseline"]["truth_chair_s"] == 0.2
    assert second.metrics["baseline"]["details"]["copied_from"] == first.number

    other_labeler = draft(policy="iteration-1", labeler="another-labeler")  # measured another way: measured again
    lifecycle.launch(other_labeler)
    assert Job.objects.filter(iteration=other_labeler, kind=JobKind.BASELINE).exists()


def test_a_resumed_generate_stage_keeps_its_baseline_job():
    InstructionFactory(split=Split.HELDOUT)
    iteration = draft()
    lifecycle.launch(iteration)
    job = Job.objects.get(iteration=iteration, kind=JobKind.BASELINE)
    job.fail("labeler out of memory")
    lifecycle.fail(iteration, "labeler out of memory")
    assert lifecycle.resume(iteration)
    job.refresh_from_db()
    assert job.state == JobState.PENDING and Job.objects.filter(iteration=iteration, kind=JobKind.BASELINE).count() == 1


def test_the_start_of_a_chain_is_its_first_iterations_baseline():
    first = IterationFactory(checkpoint="iteration-1", metrics={"baseline": {"truth_chair_s": 0.5}})
    second = IterationFactory(policy="iteration-1", checkpoint="iteration-2", metrics={"baseline": {"x": 1}})
    third = IterationFactory(policy="iteration-2")
    assert start_for(third) == {"truth_chair_s": 0.5}
    assert start_for(first) == {"truth_chair_s": 0.5} and start_for(second) == start_for(third)


def test_the_monitor_warns_when_the_policy_games_the_labeler():
    start = {"truth_count_chair_s": 0.72, "repetition_share": 0.37, "mean_words": 14.1, "mean_distinct_claims": 2.0}
    now = {"truth_count_chair_s": 0.92, "repetition_share": 0.74, "mean_words": 18.3, "mean_distinct_claims": 1.9}
    pairs = {"chosen_repetition_share": 0.89, "rejected_repetition_share": 0.14, "chosen_mean_words": 15.0,
             "rejected_mean_words": 14.0}  # fmt: skip
    iteration = IterationFactory(metrics={"baseline": start, "eval": now, "pairs": pairs})
    watched = monitor(iteration)
    assert len(watched.warnings) == 3  # the pairs teach repeating; repeats and length rose
    rows = {row.key: (row.first, row.second, row.change) for row in watched.rows}
    assert rows["repetition_share"] == ("37.0%", "74.0%", "+37.0 points")
    assert rows["mean_words"] == ("14.10", "18.30", "+30%")
    assert rows["truth_count_chair_s"] == ("72.0%", "92.0%", "+20.0 points")
    assert [(r.first, r.second) for r in watched.pair_rows] == [("89.0%", "14.0%"), ("15.00", "14.00")]

    steady = IterationFactory(metrics={"baseline": start, "eval": start | {"truth_count_chair_s": 0.5}})
    assert monitor(steady).warnings == []


def test_the_change_from_the_start_reads_the_iterations_own_baseline():
    iteration = IterationFactory(
        status=IterationStatus.DONE,
        metrics={"eval": {"truth_count_chair_s": 0.30}, "baseline": {"truth_count_chair_s": 0.50}},
    )
    (row,) = compare([iteration])
    assert row.change == pytest.approx(-0.2)
    set_based = IterationFactory(
        status=IterationStatus.DONE, metrics={"eval": {"truth_count_chair_s": 0.3}, "baseline": {"truth_chair_s": 0.5}}
    )
    assert compare([set_based])[0].change is None  # measured another way: no change is claimed


def test_the_pages_show_the_start_and_the_monitors(client, alice):
    start = {"truth_count_chair_s": 0.6, "repetition_share": 0.3, "mean_words": 10.0, "mean_distinct_claims": 2.0}
    now = {"truth_count_chair_s": 0.4, "repetition_share": 0.6, "mean_words": 10.5, "mean_distinct_claims": 1.5}
    iteration = IterationFactory(status=IterationStatus.DONE, metrics={"baseline": start, "eval": now})
    JobFactory(iteration=iteration, kind=JobKind.EVALUATE, chunk=0, total=0)
    client.force_login(alice)
    for page in (reverse("home"), reverse("iteration", args=[iteration.number])):
        html = client.get(page).content.decode()
        assert 'data-monitor-row="repetition_share"' in html and "+30.0 points" in html, page
        assert "data-monitor-warning" in html and "repeating a claim rose by 30 points" in html, page
    home = client.get(reverse("home")).content.decode()
    assert '"x": ["start", ' in home  # the trends start at the starting policy
    assert "-20.0 points" in home  # the change from the start, in the strategies compared


def test_an_evaluation_reads_the_test_split_unless_a_run_chooses_settings_on_validation():
    test = InstructionFactory(split=Split.HELDOUT)
    validation = InstructionFactory(split=Split.VALIDATION)
    InstructionFactory(split=Split.TRAIN)
    reported = IterationFactory()
    tuning = IterationFactory(config={"eval_split": "validation"})
    assert evaluation_split(reported) == [test]
    assert evaluation_split(tuning) == [validation]
    assert measurement(reported) != measurement(tuning)  # never copied from one to the other
    with pytest.raises(ValueError, match="eval_split must be"):
        evaluation_split(IterationFactory(config={"eval_split": "train"}))


def test_a_users_import_does_not_change_the_test_split_an_iteration_reports_on():
    """Found on first use: the held-out evaluation took in an instruction the user imported (301, not 300)."""
    shapes = InstructionFactory.create_batch(2, split=Split.HELDOUT, source="shapes")
    iteration = IterationFactory()
    iteration.instructions.set([InstructionFactory(split=Split.TRAIN, source="shapes")])
    before = measurement(iteration)
    InstructionFactory(split=Split.HELDOUT, source="upload")  # a user's import, held-out too
    assert evaluation_split(iteration) == shapes and measurement(iteration) == before
    elsewhere = IterationFactory()  # its sources have no held-out instructions: every source's are its test split
    elsewhere.instructions.set([InstructionFactory(split=Split.TRAIN, source="coco")])
    assert len(evaluation_split(elsewhere)) == 3


def test_no_iteration_trains_on_the_test_or_the_validation_split():
    from django.core.management import CommandError, call_command

    InstructionFactory(split=Split.HELDOUT)
    for split in ("heldout", "validation"):
        with pytest.raises(CommandError, match="neither is ever trained on"):
            call_command("run_iteration", "--new", "--policy", "p", "--labeler", "l", "--split", split)
    assert not Iteration.objects.exists()
