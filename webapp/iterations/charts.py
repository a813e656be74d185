"""What the pages' charts show, as plain data; webapp/static/webapp/charts.js draws it with the vendored Chart.js.

A view hands `as_data(charts)` to its template, which puts a <canvas id="{chart.id}"> per chart and the list
itself in the page with `json_script` (the CSP allows no inline script). Shares are sent as percentages, so the
numbers in the page are the numbers people read on the axes and on hover.
"""

from dataclasses import asdict, dataclass

from webapp.iterations.metric_names import Metric, metric, numbers, ordered
from webapp.iterations.metrics import IterationStats
from webapp.models import Job


@dataclass(frozen=True)
class Series:
    label: str
    values: list[float | None]
    colour: int = 0  # an index into charts.js's palette: a labeler-judged rate and its truth share one
    dashed: bool = False  # measured against the ground truth
    low: list[float | None] | None = None  # an interval around each value, drawn as a shaded band
    high: list[float | None] | None = None


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    x_title: str
    y_title: str
    x: list
    series: list[Series]
    kind: str = "line"  # or "bar"
    unit: str = ""  # "%" when the values are percentages (then the y axis runs from 0 to 100)


def as_data(charts: list[Chart]) -> list[dict]:
    return [asdict(chart) for chart in charts]


# What the dashboard computes itself, next to the stored metrics (webapp.iterations.metric_names).
DERIVED = {
    "claims_rejected": Metric("Training claims rejected (labeler)", percent=True),
    "reviewer_agreement": Metric("Labeler agrees with reviewers (Wilson 95% band)", percent=True),
    "pairs_kept": Metric("Pairs kept for training (not excluded)"),
}

# The dashboard's trend charts: (title, y axis title, groups of keys); the keys of a group share a colour, so each
# labeler-judged rate is drawn next to the ground truth that checks it. A metric in no group gets its own chart.
TRENDS = [
    (
        "Held-out hallucination: labeler-judged and true",
        "% of answers or mentions",
        [
            ("eval.answer_hallucination_rate", "eval.truth_chair_s"),
            ("eval.claim_hallucination_rate", "eval.truth_chair_i"),
            ("eval.truth_count_chair_s",),
            ("eval.truth_count_chair_i",),
            ("eval.chair_s",),
            ("eval.chair_i",),
        ],
    ),
    (
        "AMBER: hallucination in descriptions",
        "% of nouns, descriptions or objects",
        [("eval.amber_chair",), ("eval.amber_hal",), ("eval.amber_cog",), ("eval.amber_cover",)],
    ),
    (
        "AMBER: yes/no questions",
        "%",
        [
            ("eval.amber_accuracy",),
            ("eval.amber_f1",),
            ("eval.amber_existence_f1",),
            ("eval.amber_attribute_f1",),
            ("eval.amber_relation_f1",),
        ],
    ),
    ("MMHal-Bench: answers rated hallucinated", "% of answers", [("eval.mmhal_hallucination_rate",)]),
    ("MMHal-Bench: the judge's average rating", "rating (0-6)", [("eval.mmhal_score",)]),
    (
        "How often the labeler is right",
        "% of claims",
        [("reviewer_agreement",), ("feedback.labeler_accuracy",), ("eval.truth_labeler_accuracy",)],
    ),
    ("Training claims the labeler rejected", "% of claims", [("claims_rejected",)]),
    (
        "Preference pairs",
        "pairs",
        [
            ("pairs_kept",),
            ("train.pairs",),
            ("feedback.pairs_right",),
            ("feedback.pairs_wrong",),
            ("feedback.pairs_even",),
        ],
    ),
    ("True objects named", "% of true objects", [("eval.truth_recall", "eval.object_recall")]),
    # What a policy that games the labeler changes first (labeling.answer_shape): held out, and in the pairs.
    (
        "Answers repeating a claim",
        "% of answers",
        [("eval.repetition_share",), ("pairs.chosen_repetition_share",), ("pairs.rejected_repetition_share",)],
    ),
    (
        "Words per answer",
        "words",
        [("eval.mean_words", "eval.truth_mean_words"), ("pairs.chosen_mean_words",), ("pairs.rejected_mean_words",)],
    ),
    ("Claims per held-out answer", "claims", [("eval.mean_distinct_claims",), ("eval.mean_repeated_claims",)]),
]


def described(key: str) -> Metric:
    return DERIVED.get(key) or metric(key)


def scaled(values: list[float | None], as_percent: bool) -> list[float | None]:
    return [None if v is None else round(100 * v, 2) if as_percent else v for v in values]


def trend_row(stats: IterationStats) -> dict[str, float]:
    """One iteration's numbers for the trends: its stored metrics and what the dashboard derives. Its baseline is
    not among them: the trends draw one, the loop's start, as their first point."""
    row = {k: v for k, v in numbers(stats.iteration.metrics).items() if not k.startswith("baseline.")}
    if stats.rejected_share is not None:
        row["claims_rejected"] = stats.rejected_share
    if stats.agreement:
        row["reviewer_agreement"] = stats.agreement.rate
    if stats.pairs:
        row["pairs_kept"] = stats.pairs - stats.excluded
    return row


START = "start"  # the x of the starting policy's point


def trend_charts(stats: list[IterationStats], start: dict | None = None) -> list[Chart]:
    """Line charts across iterations (`stats` oldest first): the TRENDS groups, then each other stored metric.
    `start`, the starting policy's evaluation (webapp.iterations.baseline), is every chart's first point."""
    rows = [trend_row(s) for s in stats]
    x = [s.iteration.number for s in stats]
    agreement = [s.agreement for s in stats]
    if start:
        rows, x, agreement = [numbers({"eval": start})] + rows, [START, *x], [None, *agreement]
    charts, grouped = [], set()
    bands = {
        "reviewer_agreement": {
            "low": scaled([a.low if a else None for a in agreement], True),
            "high": scaled([a.high if a else None for a in agreement], True),
        }
    }

    def series(key, colour):
        about = described(key)
        values = scaled([row.get(key) for row in rows], about.percent)
        return Series(about.label, values, colour, about.truth, **bands.get(key, {}))

    def chart(title, y_title, series_list, about):
        unit = "%" if about.percent else ""
        x_title = "iteration (start: the starting policy)" if start else "iteration"
        charts.append(Chart(f"trend-{len(charts)}", title, x_title, y_title, x, series_list, unit=unit))

    for title, y_title, groups in TRENDS:
        grouped |= {key for group in groups for key in group}
        shown = [
            series(key, colour)
            for colour, group in enumerate(groups)
            for key in group
            if any(key in row for row in rows)
        ]
        if shown:
            chart(title, y_title, shown, described(groups[0][0]))
    for key in ordered({key for row in rows for key in row} - grouped):
        chart(described(key).label, described(key).label, [series(key, 0)], described(key))
    return charts


def score_chart(stats: IterationStats) -> Chart | None:
    """How many of an iteration's answers got each score, best first; None before combine scored them."""
    if not stats.score_histogram:
        return None
    scores, counts = zip(*stats.score_histogram, strict=True)
    return Chart(
        f"scores-{stats.iteration.number}",
        f"Responses per score, iteration {stats.iteration.number}",
        "score (minus rejected claims)",
        "responses",
        list(scores),
        [Series("Responses", list(counts))],
        kind="bar",
    )


def training_charts(jobs: list[Job]) -> list[Chart]:
    """Each train job's loss curve (its `log`, one record per logged optimizer step), and its reward accuracy."""
    charts = []
    for job in jobs:
        records = [r for r in job.log if isinstance(r, dict) and "step" in r]
        if not records:
            continue
        steps = [r["step"] for r in records]
        loss = [r.get("loss") for r in records]
        charts.append(Chart(f"loss-{job.pk}", "DPO loss", "optimizer step", "loss", steps, [Series("Loss", loss)]))
        accuracy = [r.get("rewards/accuracies") for r in records]
        if any(a is not None for a in accuracy):
            charts.append(
                Chart(
                    f"reward-accuracy-{job.pk}",
                    "Pairs whose chosen answer the policy rewards more",
                    "optimizer step",
                    "% of the step's pairs",
                    steps,
                    [Series("Reward accuracy", scaled(accuracy, True), colour=2)],
                    unit="%",
                )
            )
    return charts


def reliability_chart(bins) -> Chart:
    """The labeler's reliability diagram: per bin of p_yes, the share of its claims that is true next to the
    bin's mean p_yes (where a calibrated labeler's share would lie)."""
    return Chart(
        id="chart-reliability",
        title="Reliability of the labeler",
        x_title="p_yes",
        y_title="% of claims",
        x=[f"{b.low:.1f}–{b.high:.1f}" for b in bins],
        series=[
            # Dashed, as on the dashboard: measured against the truth.
            Series("True (truth or reviewers)", scaled([b.share_true for b in bins], True), colour=0, dashed=True),
            Series(
                "Mean p_yes (where a calibrated labeler's share lies)",
                scaled([b.mean_p_yes for b in bins], True),
                colour=1,
            ),  # fmt: skip
        ],
        unit="%",
    )
