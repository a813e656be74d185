"""The charts in a real Chromium (tests/browser.py): Chart.js draws them under the strict CSP, axes labelled,
values on hover, with no CSP violation and no console error."""

import pytest
from django.urls import reverse

from tests.browser import BROWSER_MARKS, log_in
from tests.factories import IterationFactory, JobFactory
from tests.review_data import reviewing_iteration
from webapp.models import IterationStatus, JobKind, JobState

pytestmark = BROWSER_MARKS

# Installed before any page script runs (through the browser's debugging protocol, which the CSP does not govern).
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
});
"""
# Every chart on the page as Chart.js holds it: its axes' titles and tick labels, its series, and whether the
# canvas has any pixel drawn.
DRAWN = """
() => Array.from(document.querySelectorAll("canvas")).map((canvas) => {
  const chart = Chart.getChart(canvas);
  if (!chart) return { id: canvas.id, drawn: false };
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  return {
    id: canvas.id,
    drawn: pixels.some((value) => value !== 0),
    x: chart.options.scales.x.title.text,
    y: chart.options.scales.y.title.text,
    xTicks: chart.scales.x.ticks.map((tick) => String(tick.label)),
    yTicks: chart.scales.y.ticks.map((tick) => String(tick.label)),
    series: chart.data.datasets.map((set) => set.label),
    values: chart.data.datasets.map((set) => set.data),
  };
})
"""
EVAL_1 = {
    "answer_hallucination_rate": 0.5,
    "truth_chair_s": 0.45,
    "claim_hallucination_rate": 0.2,
    "truth_chair_i": 0.25,
}
EVAL_2 = {
    "answer_hallucination_rate": 0.35,
    "truth_chair_s": 0.3,
    "claim_hallucination_rate": 0.15,
    "truth_chair_i": 0.1,
}


@pytest.fixture
def problems(page):
    """Console errors and uncaught exceptions as they come; CSP violations are read from the page at the end.

    The browser's own request for /favicon.ico (the app has none) is not the page's doing and is left out.
    """
    found = []

    def console(message):
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            found.append(message.text)

    page.add_init_script(RECORD_VIOLATIONS)
    page.on("console", console)
    page.on("pageerror", lambda error: found.append(f"uncaught: {error}"))
    return found


def charts_on(page):
    page.wait_for_load_state("load")
    page.wait_for_function("() => window.Chart && document.querySelectorAll('canvas').length > 0")
    # The dashboard's trends are folded under its lead figure: open them, as a reader would.
    page.evaluate("document.querySelectorAll('details').forEach((fold) => { fold.open = true; })")
    page.wait_for_timeout(200)  # Chart.js redraws the charts the fold revealed
    return {chart["id"]: chart for chart in page.evaluate(DRAWN)}


def hover(page, canvas_id, dataset, index):
    """Move the mouse onto a point or bar; returns the tooltip's title and lines as Chart.js shows them."""
    canvas = page.locator(f"#{canvas_id}")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    x, y = page.evaluate(
        "([id, set, i]) => { const el = Chart.getChart(id).getDatasetMeta(set).data[i]; return [el.x, el.y]; }",
        [canvas_id, dataset, index],
    )
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.wait_for_function("id => Chart.getChart(id).tooltip.opacity > 0", arg=canvas_id)
    return page.evaluate(
        "id => { const t = Chart.getChart(id).tooltip; return [t.title.join(' '), t.body.flatMap((b) => b.lines)]; }",
        canvas_id,
    )


def assert_clean(page, problems):
    assert page.evaluate("window.cspViolations") == []
    assert problems == []


def test_the_dashboard_draws_its_charts_under_the_csp(page, problems, alice):
    IterationFactory(number=1, status=IterationStatus.DONE, metrics={"eval": EVAL_1}, checkpoint="checkpoints/i-1")
    IterationFactory(number=2, status=IterationStatus.DONE, metrics={"eval": EVAL_2}, checkpoint="checkpoints/i-2")
    reviewing = reviewing_iteration([[0.9, 0.9], [0.2, 0.9]], [[0.2, 0.2], [0.9]], number=3)
    log_in(page, "alice")
    charts = charts_on(page)

    assert all(chart["drawn"] for chart in charts.values()), charts
    hallucination = charts["trend-0"]
    assert (hallucination["x"], hallucination["y"]) == ("iteration", "% of answers or mentions")
    assert hallucination["xTicks"] == ["1", "2", "3"]
    assert "0%" in hallucination["yTicks"] and "100%" in hallucination["yTicks"]
    assert hallucination["series"] == [
        "Answers with a rejected claim (labeler)",
        "Answers with a hallucinated object (truth, CHAIRs)",
        "Claims rejected (labeler)",
        "Object mentions hallucinated (truth, CHAIRi)",
    ]
    assert hallucination["values"][1] == [45, 30, None]
    scores = charts[f"scores-{reviewing.number}"]
    assert (scores["x"], scores["y"], scores["xTicks"]) == (
        "score (minus rejected claims)",
        "responses",
        ["0", "-1", "-2"],
    )
    assert all(chart["x"] and chart["y"] and chart["yTicks"] for chart in charts.values())

    title, lines = hover(page, "trend-0", 1, 1)
    assert title == "iteration: 2"
    assert "Answers with a rejected claim (labeler): 35%" in lines
    assert "Answers with a hallucinated object (truth, CHAIRs): 30%" in lines
    assert hover(page, scores["id"], 0, 0) == ["score (minus rejected claims): 0", ["Responses: 2"]]
    assert_clean(page, problems)


def test_a_trained_iterations_page_draws_its_loss_curve(page, problems, alice):
    log = [
        {"step": s, "loss": round(0.6931 - 0.04 * s, 4), "rewards/accuracies": min(1.0, s / 8)} for s in range(1, 11)
    ]
    iteration = IterationFactory(
        status=IterationStatus.DONE,
        checkpoint="checkpoints/iteration-1",
        metrics={"train": {"pairs": 40, "steps": 10, "final_loss": 0.2931}, "eval": EVAL_1},
    )
    job = JobFactory(iteration=iteration, kind=JobKind.TRAIN, state=JobState.SUCCEEDED, done=10, total=10, log=log)
    log_in(page, "alice")
    page.goto(reverse("iteration", args=[iteration.number]))
    charts = charts_on(page)

    loss = charts[f"loss-{job.pk}"]
    assert loss["drawn"] and (loss["x"], loss["y"], loss["series"]) == ("optimizer step", "loss", ["Loss"])
    assert loss["values"] == [[record["loss"] for record in log]]
    assert loss["xTicks"][0] == "1" and loss["yTicks"]
    accuracy = charts[f"reward-accuracy-{job.pk}"]
    assert accuracy["drawn"] and "100%" in accuracy["yTicks"]
    assert hover(page, loss["id"], 0, 0) == ["optimizer step: 1", ["Loss: 0.6531"]]

    table = page.inner_text("table.figures")
    assert "Held-out evaluation" in table and "Answers with a hallucinated object (truth, CHAIRs)\t45.0%" in table
    assert "Final DPO loss\t0.2931" in table
    assert_clean(page, problems)


def test_the_violation_recorder_sees_what_the_csp_blocks(page, problems, alice):
    """The clean runs above mean something: an inline style on the same page is caught."""
    log_in(page, "alice")
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')")
    page.wait_for_function("window.cspViolations.length > 0")
    assert page.evaluate("window.cspViolations")[0].startswith("style-src")
    assert any("Content Security Policy" in text for text in problems)


def test_the_dashboard_starts_every_trend_at_the_starting_policy_and_shows_the_monitors(page, problems, alice):
    """The loop's start (the starting policy on the test split) is each trend's first point, and a policy that
    learnt to repeat itself is called out beside its falling hallucination rate."""
    start = EVAL_1 | {"repetition_share": 0.3, "mean_words": 12.0, "mean_distinct_claims": 2.0}
    now = EVAL_2 | {"repetition_share": 0.55, "mean_words": 12.5, "mean_distinct_claims": 1.6}
    IterationFactory(number=1, status=IterationStatus.DONE, metrics={"baseline": start, "eval": now})
    log_in(page, "alice")
    charts = charts_on(page)

    hallucination = charts["trend-0"]
    assert hallucination["xTicks"] == ["start", "1"] and hallucination["x"].startswith("iteration (start")
    assert hallucination["values"][1] == [45, 30]  # the true CHAIRs from the start to iteration 1
    monitor = page.locator("section.monitor")
    assert monitor.is_visible()
    assert "Answers repeating a claim rose by 25 points" in monitor.inner_text()
    assert "Repeating a claim\t30.0%\t55.0%\t+25.0 points" in page.inner_text("table.monitor-figures")
    assert "-15.0 points" in page.inner_text("table.comparison")  # the change from the start: 45% → 30%
    assert_clean(page, problems)


def test_no_chart_of_counts_or_rates_draws_a_negative_axis(page, problems, alice):
    """Found on first use: a count that was 0 drew its y axis from -1 to 1; and the calibration page dashed the
    calibrated line where the dashboard dashes what is measured against the truth."""
    IterationFactory(number=1, status=IterationStatus.DONE, metrics={"eval": EVAL_1}, checkpoint="checkpoints/i-1")
    reviewing = reviewing_iteration([[0.9, 0.9], [0.2, 0.9]], [[0.2, 0.2], [0.9]], number=2)
    log_in(page, "alice")
    axes = """() => Array.from(document.querySelectorAll("canvas")).map((canvas) => {
      const chart = Chart.getChart(canvas);
      const values = chart.data.datasets.flatMap((set) => set.data).filter((v) => v !== null);
      return { id: canvas.id, min: chart.scales.y.min, nonNegative: values.every((v) => v >= 0),
               dashed: chart.data.datasets.filter((s) => s.borderDash.length).map((s) => s.label) };
    })"""
    charts_on(page)
    drawn = page.evaluate(axes)
    assert drawn and all(chart["min"] >= 0 for chart in drawn if chart["nonNegative"]), drawn
    from django.contrib.auth import get_user_model

    from webapp.models import Claim, Decision
    from webapp.review.service import record_review

    reviewer = get_user_model().objects.get(username="alice")
    for claim, decision in zip(Claim.objects.filter(response__iteration=reviewing).order_by("pk")[:2],
                               (Decision.CORRECT, Decision.HALLUCINATED), strict=True):  # fmt: skip
        record_review(claim, reviewer, decision)  # truth for the reliability diagram
    page.goto(reverse("iteration-calibration", args=[reviewing.number]))
    charts_on(page)
    (reliability,) = [chart for chart in page.evaluate(axes) if chart["id"] == "chart-reliability"]
    assert reliability["dashed"] == ["True (truth or reviewers)"]
    assert_clean(page, problems)
