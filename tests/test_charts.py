"""The data the views hand to the charts (webapp/iterations/charts.py) and the metrics in words
(webapp/iterations/metric_names.py)."""

import json
import math

import pytest
from django.urls import reverse

from tests.factories import IterationFactory, JobFactory
from tests.review_data import reviewing_iteration
from webapp.iterations.charts import as_data, score_chart, training_charts, trend_charts
from webapp.iterations.metric_names import display, figures, metric, numbers
from webapp.iterations.metrics import iteration_stats
from webapp.models import Claim, Decision, IterationStatus, JobKind, JobState
from webapp.review.service import record_review

EVAL = {
    "answer_hallucination_rate": 0.5,
    "truth_chair_s": 0.4,
    "claim_hallucination_rate": 0.25,
    "truth_chair_i": 0.2,
    "mean_words": 7.25,
    "details": {"instructions": 300, "heldout": {"answers": 300}},
}
LOSS_LOG = [
    {"step": 1, "epoch": 0.5, "loss": 0.6931, "rewards/accuracies": 0.0, "rewards/margins": 0.0},
    {"step": 2, "epoch": 1.0, "loss": 0.65, "rewards/accuracies": 0.75, "rewards/margins": 0.1},
    {"step": 3, "epoch": 1.5, "loss": None, "rewards/accuracies": 0.875},  # a diverged step stored as null
]


def by_title(charts):
    return {chart.title: chart for chart in charts}


def test_metric_keys_read_as_words_with_their_units():
    assert metric("eval.truth_chair_s").label == "Answers with a hallucinated object (truth, CHAIRs)"
    assert metric("eval.truth_chair_s").percent and metric("eval.truth_chair_s").truth
    assert metric("feedback.pairs_right").label == "Pairs preferring the answer with fewer wrong objects (truth)"
    assert not metric("eval.answer_hallucination_rate").truth
    assert metric("eval.some_new_metric").label == "eval.some_new_metric"  # a new key still shows
    assert display("eval.truth_chair_s", 0.4) == "40.0%"
    assert display("feedback.pairs_right", 12) == "12"
    assert display("train.pairs", 1234.0) == "1,234"
    assert display("train.final_loss", 0.693147) == "0.6931"
    # Found on first use: "Length ratio allowed 0" while balancing was on.
    assert metric("length_ratio").label.startswith("Length balance: how much shorter a chosen answer may be")
    assert display("length_ratio", 0.0) == "0.0%"


def test_only_finite_numbers_one_level_deep_are_metrics():
    stored = {"eval": EVAL | {"broken": math.nan, "flag": True, "name": "x"}, "length_ratio": 0.9}
    assert numbers(stored) == {
        "eval.answer_hallucination_rate": 0.5,
        "eval.truth_chair_s": 0.4,
        "eval.claim_hallucination_rate": 0.25,
        "eval.truth_chair_i": 0.2,
        "eval.mean_words": 7.25,
        "length_ratio": 0.9,
    }
    assert numbers(None) == {}


def test_the_figures_table_puts_the_evaluation_first_and_each_truth_after_the_labelers_rate():
    stored = {"train": {"pairs": 40, "steps": 10, "final_loss": 0.61}, "eval": EVAL, "length_ratio": 0.9}
    sections = figures(stored)
    assert [title for title, _ in sections] == ["Held-out evaluation", "Training", "Other figures"]
    evaluation = [(f.label, f.value) for f in sections[0][1]]
    assert evaluation == [
        ("Answers with a rejected claim (labeler)", "50.0%"),
        ("Answers with a hallucinated object (truth, CHAIRs)", "40.0%"),
        ("Claims rejected (labeler)", "25.0%"),
        ("Object mentions hallucinated (truth, CHAIRi)", "20.0%"),
        ("Words per held-out answer", "7.25"),
    ]
    assert [(f.key, f.value) for f in sections[1][1]] == [
        ("train.pairs", "40"),
        ("train.steps", "10"),
        ("train.final_loss", "0.61"),
    ]
    assert figures({}) == []


@pytest.mark.django_db
def test_trends_draw_the_true_rates_next_to_the_labeler_judged_ones():
    first = IterationFactory(number=1, status=IterationStatus.DONE, metrics={"eval": EVAL})
    second = IterationFactory(number=2, status=IterationStatus.DONE, metrics={"eval": {"truth_chair_s": 0.3}})
    charts = by_title(trend_charts(iteration_stats([first, second])))
    chart = charts["Held-out hallucination: labeler-judged and true"]
    assert (chart.x_title, chart.y_title, chart.unit, chart.x) == (
        "iteration",
        "% of answers or mentions",
        "%",
        [1, 2],
    )
    series = {s.label: s for s in chart.series}
    labeler = series["Answers with a rejected claim (labeler)"]
    truth = series["Answers with a hallucinated object (truth, CHAIRs)"]
    assert labeler.values == [50.0, None] and not labeler.dashed  # as percentages; a gap where it was not measured
    assert truth.values == [40.0, 30.0] and truth.dashed and truth.colour == labeler.colour
    assert "Answers with a hallucinated object (COCO, CHAIRs)" not in series  # never measured: no empty line
    words = charts["Words per answer"]  # held out, beside the pairs' chosen and rejected answers
    assert (words.y_title, words.unit, words.series[0].label) == ("words", "", "Words per held-out answer")
    assert words.series[0].values == [7.25, None]
    assert len({chart.id for chart in charts.values()}) == len(charts)


@pytest.mark.django_db
def test_every_trend_starts_at_the_starting_policy():
    """The baseline (the starting policy on the test split) is the first point: the rate's fall is visible from
    the first evaluated iteration on, and its own baseline is not drawn again as a metric."""
    start = {"truth_chair_s": 0.5, "repetition_share": 0.3}
    first = IterationFactory(number=1, status=IterationStatus.DONE, metrics={"eval": EVAL, "baseline": start})
    charts = by_title(trend_charts(iteration_stats([first]), start))
    chart = charts["Held-out hallucination: labeler-judged and true"]
    assert chart.x == ["start", 1] and chart.x_title.startswith("iteration (start")
    truth = {s.label: s for s in chart.series}["Answers with a hallucinated object (truth, CHAIRs)"]
    assert truth.values == [50.0, 40.0]
    assert charts["Answers repeating a claim"].series[0].values == [30.0, None]
    assert not any("baseline" in title for title in charts)


@pytest.mark.django_db
def test_trends_show_agreement_with_its_interval_and_the_pairs_kept(alice):
    iteration = reviewing_iteration([[0.9], [0.2]])
    record_review(Claim.objects.get(response__seed=1), alice, Decision.HALLUCINATED)  # the labeler agreed
    charts = by_title(trend_charts(iteration_stats([iteration])))
    (agreement,) = charts["How often the labeler is right"].series
    assert agreement.label == "Labeler agrees with reviewers (Wilson 95% band)"
    assert (agreement.values, agreement.low, agreement.high) == ([100.0], [20.65], [100.0])
    assert charts["Training claims the labeler rejected"].series[0].values == [50.0]
    assert charts["Preference pairs"].series[0].values == [1]
    assert charts["Preference pairs"].unit == ""


@pytest.mark.django_db
def test_the_score_histogram_has_a_bar_per_score_best_first():
    iteration = reviewing_iteration([[0.9, 0.9], [0.2, 0.2]], [[0.2, 0.2], [0.1, 0.3]])  # scores 0, -2; -2, -2
    (stats,) = iteration_stats([iteration])
    chart = score_chart(stats)
    assert (chart.kind, chart.x, chart.series[0].values) == ("bar", [0, -1, -2], [1, 0, 3])
    assert (chart.x_title, chart.y_title) == ("score (minus rejected claims)", "responses")
    assert score_chart(iteration_stats([IterationFactory()])[0]) is None  # nothing scored yet


@pytest.mark.django_db
def test_a_train_jobs_log_becomes_its_loss_curve_and_reward_accuracy():
    iteration = IterationFactory(status=IterationStatus.DONE)
    job = JobFactory(iteration=iteration, kind=JobKind.TRAIN, state=JobState.SUCCEEDED, log=LOSS_LOG)
    untrained = JobFactory(iteration=IterationFactory(), kind=JobKind.TRAIN, log=[])
    loss, accuracy = training_charts([job, untrained])
    assert (loss.id, loss.x_title, loss.y_title, loss.x) == (f"loss-{job.pk}", "optimizer step", "loss", [1, 2, 3])
    assert loss.series[0].values == [0.6931, 0.65, None]
    assert (accuracy.unit, accuracy.series[0].values) == ("%", [0.0, 75.0, 87.5])
    assert json.loads(json.dumps(as_data([loss])))[0]["series"][0]["values"] == [0.6931, 0.65, None]


@pytest.mark.django_db
def test_the_iteration_page_shows_the_loss_curve_and_the_figures(client, alice):
    iteration = IterationFactory(status=IterationStatus.DONE, metrics={"eval": EVAL, "train": {"pairs": 40}})
    JobFactory(iteration=iteration, kind=JobKind.TRAIN, state=JobState.SUCCEEDED, log=LOSS_LOG)
    client.force_login(alice)
    response = client.get(reverse("iteration", args=[iteration.number]))
    html = response.content.decode()
    assert [chart["title"] for chart in response.context["charts"]] == [
        "DPO loss",
        "Pairs whose chosen answer the policy rewards more",
    ]
    assert '<canvas id="loss-' in html and 'id="chart-data"' in html and "chart.umd.min.js" in html
    assert '<tr data-metric="eval.truth_chair_s"><td>Answers with a hallucinated object (truth, CHAIRs)</td>' in html
    assert '<td class="number">40.0%</td>' in html


@pytest.mark.django_db
def test_an_iteration_without_training_or_metrics_loads_no_chart_library(client, alice):
    iteration = IterationFactory()
    client.force_login(alice)
    html = client.get(reverse("iteration", args=[iteration.number])).content.decode()
    assert "chart.umd.min.js" not in html and "<canvas" not in html and "Figures" not in html
