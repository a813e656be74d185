"""What the dashboard shows per iteration, read from counts kept up to date as the data changes
(webapp/iterations/counts.py).

Scores come from the cached `Response.score` (kept equal to the effective verdicts by combine and by every
review), so the share of claims rejected needs no pass over the verdicts. Agreement is measured on the
claims a human decided (latest decisive review) against the labeler's verdict on them; the spot-check queue
serves the most uncertain claims first, so it understates the agreement on claims at large.
"""

from dataclasses import dataclass, field

from labeling.audit import wilson_interval
from webapp.iterations.counts import counts_of
from webapp.iterations.progress import StageProgress, stage_totals
from webapp.models import Iteration, Job


@dataclass(frozen=True)
class Agreement:
    agree: int
    n: int

    @property
    def rate(self) -> float:
        return self.agree / self.n

    @property
    def low(self) -> float:
        return wilson_interval(self.agree, self.n)[0]

    @property
    def high(self) -> float:
        return wilson_interval(self.agree, self.n)[1]


@dataclass
class IterationStats:
    iteration: Iteration
    progress: list[StageProgress] = field(default_factory=list)
    responses: int = 0
    scored: int = 0
    rejected: int = 0
    claims: int = 0
    pairs: int = 0
    excluded: int = 0
    scores: dict[int, int] = field(default_factory=dict)
    agreement: Agreement | None = None

    @property
    def rejected_share(self) -> float | None:
        """Rejected claims over all claims, once scores exist (after combine)."""
        return self.rejected / self.claims if self.scored and self.claims else None

    @property
    def rejected_percent(self) -> float | None:
        share = self.rejected_share
        return None if share is None else 100 * share

    @property
    def score_histogram(self) -> list[tuple[int, int]]:
        """(score, responses) from the best score down, with empty scores in between filled in."""
        if not self.scores:
            return []
        return [(s, self.scores.get(s, 0)) for s in range(max(self.scores), min(self.scores) - 1, -1)]


def iteration_stats(iterations: list[Iteration]) -> list[IterationStats]:
    """Progress, counts, scores and agreement of each iteration: two queries for any number of them and of rows.

    Progress is summed from the jobs (a few per chunk of instructions); the rest is the stored counts
    (webapp/iterations/counts.py), which every writer keeps up to date.
    """
    stats = {it.pk: IterationStats(it) for it in iterations}
    order = list(Job.Kind.values)
    jobs = Job.objects.filter(iteration__in=list(stats)).values("iteration", "kind").order_by()
    for row in jobs.annotate(**stage_totals()):
        stats[row.pop("iteration")].progress.append(StageProgress(**row))
    for iteration_id, row in counts_of(iterations).items():
        s = stats[iteration_id]
        s.progress.sort(key=lambda p: order.index(p.kind))
        s.responses, s.scored, s.rejected, s.claims = row.responses, row.scored, row.rejected, row.claims
        s.pairs, s.excluded = row.pairs, row.excluded
        s.scores = {int(score): n for score, n in row.scores.items()}
        s.agreement = Agreement(row.agree, row.decided) if row.decided else None
    return list(stats.values())
