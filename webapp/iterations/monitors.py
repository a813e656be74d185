"""Monitors a policy cannot game: how its answers moved from the starting policy's, beside its hallucination.

A lower hallucination rate is only a gain if the answers still say as much: the figures of
labeling.answer_shape (repeats, distinct claims, words), compared with the loop's start, and the training pairs'
chosen and rejected answers compared with each other, each with a plain warning past its threshold.
"""

from dataclasses import dataclass

from labeling.answer_shape import drift, drift_warnings, pair_warnings
from webapp.models import Iteration

# (key in an evaluation, in words, a share?)
ANSWER_ROWS = [
    ("truth_count_chair_s", "Naming an absent or over-counted object (truth, count-aware CHAIRs)", True),
    ("repetition_share", "Repeating a claim", True),
    ("mean_words", "Words per answer", False),
    ("mean_distinct_claims", "Distinct claims per answer", False),
]
PAIR_ROWS = [("repetition_share", "Repeating a claim", True), ("mean_words", "Words per answer", False)]


def shown(value, share: bool) -> str:
    if value is None:
        return "—"
    return f"{100 * value:.1f}%" if share else f"{value:.2f}"


def change(now, start, share: bool) -> str:
    if now is None or start is None:
        return "—"
    if share:
        return f"{100 * (now - start):+.1f} points"
    return f"{100 * (now / start - 1):+.0f}%" if start else "—"


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    first: str
    second: str
    change: str = ""


@dataclass(frozen=True)
class Monitor:
    iteration: Iteration
    start: dict | None  # the starting policy's evaluation
    now: dict | None  # the trained policy's evaluation
    pairs: dict  # the combine stage's chosen_/rejected_ figures
    warnings: list[str]

    @property
    def rows(self) -> list[Row]:
        """Held-out answers: the starting policy, this iteration's trained policy, the change."""
        start, now = self.start or {}, self.now or {}
        return [
            Row(
                key,
                label,
                shown(start.get(key), share),
                shown(now.get(key), share),
                change(now.get(key), start.get(key), share),
            )  # fmt: skip
            for key, label, share in ANSWER_ROWS
            if start.get(key) is not None or now.get(key) is not None
        ]

    @property
    def pair_rows(self) -> list[Row]:
        """The training pairs: chosen, rejected."""
        return [
            Row(
                key,
                label,
                shown(self.pairs.get(f"chosen_{key}"), share),
                shown(self.pairs.get(f"rejected_{key}"), share),
            )
            for key, label, share in PAIR_ROWS
            if f"chosen_{key}" in self.pairs
        ]


def monitor(iteration: Iteration, start: dict | None = None) -> Monitor:
    """`start`: the loop's starting point (webapp.iterations.baseline.start_for); the iteration's own baseline if
    none is given."""
    metrics = iteration.metrics or {}
    start = start or metrics.get("baseline")
    now = metrics.get("eval")
    moved = drift(now, start) if now and start else {}
    pairs = metrics.get("pairs") or {}
    return Monitor(iteration, start, now, pairs, pair_warnings(pairs) + drift_warnings(moved))
