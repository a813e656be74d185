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
"""

from dataclasses import dataclass

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
        change = None
        start = by_checkpoint.get(it.policy)
        # the starting policy's rate: the evaluation of the iteration that trained it, else the iteration's baseline
        before = measured_rate(start) if start else measured_rate(it, "baseline")
        if before and before[2] == key and (measured_by == TRUTH or start is None or start.labeler == it.labeler):
            change = rate - before[0]
        strategy = (it.config or {}).get("strategy", "rlaifv")
        pairs = ((it.metrics or {}).get("train") or {}).get("pairs")
        rows.append(Compared(it, strategy, rate, measured_by, pairs, start.number if start else None, change))
    first_seen = {}
    for row in sorted(rows, key=lambda r: r.iteration.number):
        first_seen.setdefault(row.iteration.policy, row.iteration.number)
    return sorted(rows, key=lambda r: (first_seen[r.iteration.policy], r.measured_by, r.rate, r.iteration.number))
