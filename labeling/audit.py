"""How often is the labeler wrong? Estimated without bias from a random audit sample of its verdicts.

The spot-check queue serves the least certain verdicts first, so the share of them reviewers overturn says
little about the labeler at large. An audit draws claims at random instead, in one of two designs:

- **uniform**: every claim equally likely. The error rate is the share of audited claims the reviewer
  contradicted, with its Wilson 95 % interval.
- **stratified by p_yes**: the claims are cut into bands of p_yes (`STRATUM_EDGES`) and the same number drawn
  from each, so the rare uncertain bands are audited as often as the crowded confident ones. Each band's share
  wrong counts by its weight N_h / N (its share of all claims): the stratified estimator, whose variance is
  Σ (N_h/N)² (1 − n_h/N_h) p_h (1 − p_h) / (n_h − 1), with a normal 95 % interval.

Either way an audited claim counts once its reviewer decided it (correct or hallucinated); "unsure" leaves it
out. Plain Python: the web app hands it counts.
"""

import math
import random
from bisect import bisect_right
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

Z95 = 1.96
UNIFORM = "uniform"
STRATIFIED = "stratified"
DESIGNS = (UNIFORM, STRATIFIED)
# The bands of p_yes a stratified audit draws from: [0, 0.2), [0.2, 0.4), ..., [0.8, 1].
STRATUM_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# A band's variance needs two of its claims audited; until every band has that many there is no estimate.
MIN_PER_STRATUM = 2


def wilson_interval(successes: int, n: int, z: float = Z95, population: int | None = None) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% for z = 1.96); sound for small n and rates near 0 or 1.

    `population`: the n were drawn without replacement from that many, so the interval narrows by the finite
    population correction (n counts as n (N − 1) / (N − n)) and is the point itself once all were drawn.
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    if population is not None:
        if n >= population:
            return p, p
        n = n * (population - 1) / (population - n)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_interval(after: tuple[int, int], before: tuple[int, int], z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (his method 10) of p_after − p_before, each (successes, n): from the
    two Wilson intervals, so it stays sound near 0 and 1. It treats the samples as independent; for two
    evaluations of the same pictures it is conservative (wider than a paired interval)."""
    p1, p2 = after[0] / after[1], before[0] / before[1]
    l1, u1 = wilson_interval(*after, z=z)
    l2, u2 = wilson_interval(*before, z=z)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


@dataclass(frozen=True)
class Stratum:
    """One band of claims: how many the iteration holds, how many were audited, and how many of those the
    labeler got wrong."""

    population: int
    reviewed: int
    errors: int

    def __post_init__(self):
        if not 0 <= self.errors <= self.reviewed <= self.population:
            raise ValueError(f"need 0 ≤ errors ≤ reviewed ≤ population, not {self}")


@dataclass(frozen=True)
class Estimate:
    """The labeler's error rate over all the iteration's claims (None: too few audit reviews yet), its 95 %
    interval, and what it rests on."""

    rate: float | None
    low: float
    high: float
    reviewed: int
    errors: int
    population: int

    @property
    def more_to_halve(self) -> int | None:
        """Audit reviews still to make for an interval about half as wide: the width falls as 1/√n, so four
        times the reviews in all (never more than the claims left); None before the first review."""
        if not self.reviewed:
            return None
        return min(3 * self.reviewed, self.population - self.reviewed)


def uniform_estimate(errors: int, reviewed: int, population: int) -> Estimate:
    """The error rate from a uniform sample: the share wrong, with its Wilson interval."""
    Stratum(population, reviewed, errors)  # checks the counts
    low, high = wilson_interval(errors, reviewed, population=population)
    return Estimate(errors / reviewed if reviewed else None, low, high, reviewed, errors, population)


def stratified_estimate(strata: Sequence[Stratum], z: float = Z95) -> Estimate:
    """The stratified estimator and its normal interval; no rate until each non-empty band has
    `MIN_PER_STRATUM` audited claims (a band never audited could hold any error rate)."""
    strata = [s for s in strata if s.population]
    population = sum(s.population for s in strata)
    reviewed, errors = sum(s.reviewed for s in strata), sum(s.errors for s in strata)
    if not strata or any(s.reviewed < min(MIN_PER_STRATUM, s.population) for s in strata):
        return Estimate(None, 0.0, 1.0, reviewed, errors, population)
    rate = variance = 0.0
    for s in strata:
        weight, share = s.population / population, s.errors / s.reviewed
        rate += weight * share
        if s.reviewed > 1:
            variance += weight**2 * (1 - s.reviewed / s.population) * share * (1 - share) / (s.reviewed - 1)
    half = z * math.sqrt(variance)
    return Estimate(rate, max(0.0, rate - half), min(1.0, rate + half), reviewed, errors, population)


def stratum_of(p_yes: float, edges: Sequence[float] = STRATUM_EDGES) -> int:
    """The band of p_yes a claim falls in (p_yes = 1 in the last)."""
    return min(max(bisect_right(edges, p_yes) - 1, 0), len(edges) - 2)


@dataclass(frozen=True)
class Draw:
    """An audit sample: the drawn claims in serving order with their band, and each band's population."""

    items: list[tuple[Hashable, int]]  # (claim, stratum)
    populations: list[int]


def draw(claims: Sequence[tuple[Hashable, float]], size: int, design: str, rng: random.Random) -> Draw:
    """Draw `size` of the (claim, p_yes) `claims` at random, in the order to serve them.

    Uniform: a random sample in random order, so the first n served are a random sample too. Stratified: the
    same number from each non-empty band (all of a smaller band), served round-robin across the bands in a
    random band order, so after n reviews each band holds about n / bands of them, each a random sample of it.
    """
    if design not in DESIGNS:
        raise ValueError(f"unknown audit design {design!r}: one of {', '.join(DESIGNS)}")
    if size < 1:
        raise ValueError(f"an audit sample needs at least one claim, not {size}")
    claims = sorted(claims, key=lambda c: c[0])  # the draw depends on the seed, not on the order given
    if design == UNIFORM:
        picked = rng.sample([c for c, _ in claims], min(size, len(claims)))
        return Draw([(c, 0) for c in picked], [len(claims)])
    bands = [[] for _ in range(len(STRATUM_EDGES) - 1)]
    for claim, p_yes in claims:
        bands[stratum_of(p_yes)].append(claim)
    full = [i for i, band in enumerate(bands) if band]
    per_band = math.ceil(size / len(full)) if full else 0
    drawn = {i: rng.sample(bands[i], min(per_band, len(bands[i]))) for i in full}
    order = rng.sample(full, len(full))
    items = [(drawn[i][rank], i) for rank in range(per_band) for i in order if rank < len(drawn[i])]
    return Draw(items, [len(band) for band in bands])
