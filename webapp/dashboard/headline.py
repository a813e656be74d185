"""The dashboard's lead: the one figure that says whether the loop works, and what to do next.

The figure is the latest evaluated iteration's held-out hallucination rate (count-aware truth where the
instructions carry their objects, else its labeler's: webapp.dashboard.comparison.RATES) from the starting
policy's to now, with a Wilson 95 % interval over the held-out answers it was measured on (every answer has a
seed of its own, so they are independent draws). Beside it, how often the labeler is wrong: against the truth on
the held-out claims where that is known, else its latest audit's estimate. A newcomer saw eleven single-point
charts and no words; the charts now follow, folded.
"""

from dataclasses import dataclass

from labeling.audit import wilson_interval
from webapp.dashboard.comparison import measured_rate
from webapp.iterations.metric_names import metric
from webapp.models import Iteration, IterationStatus


@dataclass(frozen=True)
class Headline:
    """The figures in percent, as the page shows them."""

    iteration: Iteration
    label: str  # what the rate counts, in words
    now: float
    low: float
    high: float
    answers: int  # the held-out answers it was measured on
    start: float | None  # the starting policy's rate, measured the same way
    labeler_error: float | None
    labeler_error_low: float | None
    labeler_error_high: float | None
    labeler_error_from: str  # where the labeler's error rate comes from, in words ("" when unknown)

    @property
    def change_points(self) -> float | None:
        return None if self.start is None else self.now - self.start


def percent(share: float | None) -> float | None:
    return None if share is None else 100 * share


def headline(evaluated: Iteration | None, start: dict | None, audit=None) -> Headline | None:
    """The lead figure of the latest evaluated iteration (None before any evaluation); `start`: the chain's
    baseline metrics, `audit`: the iteration's latest audit result, if any."""
    if evaluated is None or (measured := measured_rate(evaluated)) is None:
        return None
    rate, _, key = measured
    evaluation = evaluated.metrics.get("eval") or {}
    answers = int((evaluation.get("details") or {}).get("instructions") or 0)
    low, high = wilson_interval(round(rate * answers), answers) if answers else (0.0, 1.0)
    error, error_low, error_high, source = None, None, None, ""
    if (accuracy := evaluation.get("truth_labeler_accuracy")) is not None:
        error, source = 1 - accuracy, "on held-out claims, against the truth"
    elif audit is not None and audit.estimate.rate is not None:
        estimate = audit.estimate
        error, error_low, error_high = estimate.rate, estimate.low, estimate.high
        source = f"estimated from an audit of {estimate.reviewed} claims"
    return Headline(
        evaluated, metric(f"eval.{key}").label, percent(rate), percent(low), percent(high), answers,
        percent((start or {}).get(key)), percent(error), percent(error_low), percent(error_high), source,
    )  # fmt: skip


def next_step(latest: Iteration | None) -> str:
    """What the newest iteration waits for, in a sentence ("" when nothing does)."""
    if latest is None:
        return "No iteration yet: staff create one on the Iterations page."
    status = latest.status
    if status == IterationStatus.REVIEWING:
        return (
            f"{latest} waits at its review gate: spot-check the labeler's least certain claims, then approve it "
            "on its page to train."
        )
    if status == IterationStatus.DRAFT:
        return f"{latest} is a draft: launch it on its page."
    if status in (IterationStatus.FAILED, IterationStatus.CANCELLED):
        return f"{latest} stopped ({status}): its page says why, and resumes it."
    if status == IterationStatus.DONE:
        return ""  # the "can start from its checkpoint" line says what comes next
    return f"{latest} is {latest.get_status_display()}: its progress is below."
