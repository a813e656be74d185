"""Is the labeler's confidence worth its number? Its reliability diagram, calibration error and best margin.

The labeler's p_yes is the first-token mass on "yes" to a claim's question. Cut into bins of p_yes, a
calibrated labeler's claims are true about as often as their mean p_yes says: the reliability diagram draws
the share true per bin against the bin's mean p_yes, and the expected calibration error (ECE) is the gap
between the two averaged over the claims.

The verdict rule is RLAIF-V's "accepted when p_yes > p_no" with a margin m on p_yes − p_no: **a claim is
accepted when p_yes > p_no + m**, rejected otherwise. m = 0 is the paper's rule; m > 0 rejects more (the labeler
must be surer of yes to accept), m < 0 fewer (surer of no to reject). `best_margin` finds the m that agrees best
with the truth (reviewers' decisions, or a synthetic world's known objects). Plain Python, no Django.
"""

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

BINS = 10


def accepts(p_yes: float, p_no: float, margin: float = 0.0) -> bool:
    """The verdict rule under margin m: accepted when p_yes > p_no + m (m = 0: RLAIF-V's own rule)."""
    return p_yes > p_no + margin


@dataclass(frozen=True)
class Bin:
    """Claims whose p_yes lies in [low, high) ([low, 1] for the last bin): how many, their mean p_yes, and the
    share of them that is true (None when the bin is empty)."""

    low: float
    high: float
    n: int
    mean_p_yes: float | None
    share_true: float | None


def reliability(points: Iterable[tuple[float, bool]], bins: int = BINS) -> list[Bin]:
    """The reliability diagram of (p_yes, claim is true) points, in `bins` equal bins of p_yes."""
    sums = [[0, 0.0, 0] for _ in range(bins)]  # n, Σ p_yes, true
    for p_yes, true in points:
        row = sums[min(int(p_yes * bins), bins - 1)]
        row[0] += 1
        row[1] += p_yes
        row[2] += bool(true)
    return [
        Bin(i / bins, (i + 1) / bins, n, total / n if n else None, hits / n if n else None)
        for i, (n, total, hits) in enumerate(sums)
    ]


def expected_calibration_error(bins: list[Bin]) -> float | None:
    """Σ over bins of (its share of the claims) × |share true − mean p_yes|; None without any claim."""
    n = sum(b.n for b in bins)
    if not n:
        return None
    return sum(b.n / n * abs(b.share_true - b.mean_p_yes) for b in bins if b.n)


@dataclass(frozen=True)
class MarginFit:
    """The margin whose verdicts agree with the truth on the most claims, and how many agree under it and
    under the paper's rule (m = 0)."""

    margin: float
    agree: int
    agree_at_zero: int
    n: int


def agreement(points: Iterable[tuple[float, float, bool]], margin: float) -> int:
    """How many (p_yes, p_no, claim is true) verdicts under `margin` say what the truth says."""
    return sum(accepts(p_yes, p_no, margin) == bool(true) for p_yes, p_no, true in points)


def best_margin(points: Iterable[tuple[float, float, bool]]) -> MarginFit | None:
    """The margin m on p_yes − p_no that agrees best with the truth; None without points.

    Only where m falls between two claims' p_yes − p_no matters, so the candidates are the midpoints between
    consecutive distinct values, and one beyond each end (accept all, reject all). Of equally good margins the
    one nearest 0 wins: no reason to leave the paper's rule further than the evidence asks.
    """
    points = list(points)
    if not points:
        return None
    # Sweep m upwards: below every p_yes − p_no all claims are accepted; as m passes a value, its claims turn
    # rejected, which agrees with the truth for the false ones and no longer for the true ones.
    by_gap = {}
    for p_yes, p_no, true in points:
        row = by_gap.setdefault(p_yes - p_no, [0, 0])
        row[bool(true)] += 1
    gaps = sorted(by_gap)
    agree = sum(row[1] for row in by_gap.values())
    scored = [(agree, gaps[0] - 0.01)]
    for i, gap in enumerate(gaps):
        agree += by_gap[gap][0] - by_gap[gap][1]
        scored.append((agree, (gap + gaps[i + 1]) / 2 if i + 1 < len(gaps) else gap + 0.01))
    best, margin = max(scored, key=lambda s: (s[0], -abs(s[1])))
    return MarginFit(margin, best, agreement(points, 0.0), len(points))


@dataclass(frozen=True)
class PairChanges:
    """How one set of pairs differs from another: pairs of the same two answers whose chosen side or score
    gap differ, pairs only in the new set, pairs only in the old one."""

    changed: int
    appeared: int
    disappeared: int
    unchanged: int


def pair_changes(
    old: Iterable[tuple[Hashable, Hashable, int]], new: Iterable[tuple[Hashable, Hashable, int]]
) -> PairChanges:
    """Compare (chosen, rejected, score gap) pairs, matching pairs by their two answers."""
    before = {frozenset((c, r)): (c, gap) for c, r, gap in old}
    after = {frozenset((c, r)): (c, gap) for c, r, gap in new}
    both = before.keys() & after.keys()
    changed = sum(before[k] != after[k] for k in both)
    return PairChanges(changed, len(after.keys() - both), len(before.keys() - both), len(both) - changed)
