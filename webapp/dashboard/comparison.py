"""Iterations of different strategies side by side: how often the policy each one trained hallucinates.

The paper's ablations compare feedback strategies by what the trained policy does on held-out instructions.
Where the instructions carry their true objects (the shapes world), the rate is the true one: the share of
answers naming an absent object or an object more times than the picture holds it (count-aware CHAIRs,
`eval.truth_count_chair_s`; set-based `eval.truth_chair_s` for evaluations made before it). Elsewhere it is
the iteration's labeler's: the share of answers with a rejected claim (`eval.answer_hallucination_rate`),
judged claim by claim whatever the strategy, and comparable only between iterations with the same labeler.
Only iterations that started from the same policy compare the strategies themselves, so rows are grouped by
it, and each says how far its rate moved from its starting policy's: the evaluation of the iteration that
produced that policy, else the iteration's own baseline (webapp.iterations.baseline), measured the same way.
Each rate has its 95 % interval (Wilson's, over the answers it is a share of) and each change its interval
(Newcombe's, conservative here as both evaluations read the same pictures), as the benches give theirs.
"""

from dataclasses import dataclass

from labeling.audit import difference_interval, wilson_interval
from webapp.models import Iteration

TRUTH, LABELER = "truth", "labeler"


@dataclass(frozen=True)
class Compared:
    """One evaluated iteration: its strategy, the rate of its trained policy and what measured it."""

    iteration: Iteration
    strategy: str
    rate: float
    measured_by: str  # TRUTH or LABELER
    pairs: int | None  # the pairs DPO trained on
    started_from: int | None  # the number of the iteration whose checkpoint it trained, if any
    change: float | None  # rate − the starting policy's rate, measured the same way; None when unknown
    answers: int | None = None  # the held-out answers the rate is a share of
    before: tuple[float, int] | None = None  # the starting policy's rate and answers, when both are known

    @property
    def interval(self) -> tuple[float, float] | None:
        """The rate's 95 % Wilson interval, in percent."""
        if not self.answers:
            return None
        low, high = wilson_interval(round(self.rate * self.answers), self.answers)
        return 100 * low, 100 * high

    @property
    def change_interval(self) -> tuple[float, float] | None:
        """The change's 95 % interval in points (Newcombe's; conservative, as both rates read the same pictures)."""
        if self.change is None or not self.answers or not self.before or not self.before[1]:
            return None
        rate, answers = self.before
        low, high = difference_interval(
            (round(self.rate * self.answers), self.answers), (round(rate * answers), answers)
        )
        return 100 * low, 100 * high

    @property
    def percent(self) -> float:
        return 100 * self.rate

    @property
    def change_points(self) -> float | None:
        """The change in percentage points."""
        return None if self.change is None else 100 * self.change

    @property
    def judge(self) -> str:
        """What measured the rate, in words."""
        return "the true objects" if self.measured_by == TRUTH else f"labeler {self.iteration.labeler}"


# The rate each row reads, first found: count-aware truth (a repeat past an object's count is a hallucination),
# set-based truth (evaluations made before the count-aware rate), the labeler's.
RATES = (("truth_count_chair_s", TRUTH), ("truth_chair_s", TRUTH), ("answer_hallucination_rate", LABELER))


def measured_answers(iteration: Iteration, key: str, which: str = "eval") -> int | None:
    """How many held-out answers a rate (`key`) is a share of: those naming an object for the truth's CHAIRs,
    those that divided into claims for the labeler's rate; None where the evaluation did not record it."""
    details = ((iteration.metrics or {}).get(which) or {}).get("details") or {}
    if key.startswith("truth_"):
        return (details.get("truth") or {}).get("answers_with_objects")
    heldout = details.get("heldout") or {}
    return None if heldout.get("answers") is None else heldout["answers"] - heldout.get("split_failed", 0)


def measured_rate(iteration: Iteration, which: str = "eval") -> tuple[float, str, str] | None:
    """(rate, TRUTH or LABELER, its key) of an evaluated iteration's held-out answers (`which`: "eval", or
    "baseline" for its starting policy's); None before that evaluation."""
    evaluation = (iteration.metrics or {}).get(which) or {}
    for key, measured_by in RATES:
        if evaluation.get(key) is not None:
            return evaluation[key], measured_by, key
    return None


def compare(iterations: list[Iteration]) -> list[Compared]:
    """The evaluated ones among `iterations`, grouped by starting policy (oldest group first), then by what
    measured them, lowest rate first."""
    by_checkpoint = {it.checkpoint: it for it in iterations if it.checkpoint}
    rows = []
    for it in iterations:
        if (measured := measured_rate(it)) is None:
            continue
        rate, measured_by, key = measured
        change = before_counted = None
        start = by_checkpoint.get(it.policy)
        # the starting policy's rate: the evaluation of the iteration that trained it, else the iteration's baseline
        before = measured_rate(start) if start else measured_rate(it, "baseline")
        if before and before[2] == key and (measured_by == TRUTH or start is None or start.labeler == it.labeler):
            change = rate - before[0]
            before_answers = measured_answers(start, key) if start else measured_answers(it, key, "baseline")
            before_counted = (before[0], before_answers) if before_answers else None
        strategy = (it.config or {}).get("strategy", "rlaifv")
        pairs = ((it.metrics or {}).get("train") or {}).get("pairs")
        started = start.number if start else None
        answers = measured_answers(it, key)
        rows.append(Compared(it, strategy, rate, measured_by, pairs, started, change, answers, before_counted))
    first_seen = {}
    for row in sorted(rows, key=lambda r: r.iteration.number):
        first_seen.setdefault(row.iteration.policy, row.iteration.number)
    return sorted(rows, key=lambda r: (first_seen[r.iteration.policy], r.measured_by, r.rate, r.iteration.number))
