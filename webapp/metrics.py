"""What the dashboard shows per iteration, in a fixed number of grouped queries whatever the number of rows.

Scores come from the cached `Response.score` (kept equal to the effective verdicts by combine and by every
review), so the share of claims rejected needs no pass over the verdicts. Agreement is measured on the
claims a human decided (latest decisive review) against the labeler's verdict on them; the spot-check queue
serves the most uncertain claims first, so it understates the agreement on claims at large.
"""

from collections import defaultdict
from dataclasses import dataclass, field

from django.core.cache import cache
from django.db.models import Count, F, Q, Sum

from labeling.audit import wilson_interval
from labeling.calibration import accepts
from webapp.models import Claim, Decision, Iteration, IterationStatus, Job, PreferencePair, Response, Review
from webapp.progress import StageProgress


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
    """Counts, scores, progress and agreement of each iteration: at most five queries for any number of them."""
    stats = {it.pk: IterationStats(it) for it in iterations}
    ids = list(stats)
    order = list(Job.Kind.values)
    jobs = Job.objects.filter(iteration__in=ids).values("iteration", "kind").order_by()
    for row in jobs.annotate(
        done=Sum("done"),
        total=Sum("total"),
        jobs=Count("id"),
        succeeded=Count("id", filter=Q(state=Job.State.SUCCEEDED)),
        failed=Count("id", filter=Q(state=Job.State.FAILED)),
        running=Count("id", filter=Q(state=Job.State.RUNNING)),
    ):
        stats[row.pop("iteration")].progress.append(StageProgress(**row))
    for s in stats.values():
        s.progress.sort(key=lambda p: order.index(p.kind))

    scores = Response.objects.filter(iteration__in=ids).values("iteration", "score").order_by()
    for row in scores.annotate(n=Count("id")):
        s = stats[row["iteration"]]
        s.responses += row["n"]
        if row["score"] is not None:
            s.scored += row["n"]
            s.rejected -= row["score"] * row["n"]
            s.scores[row["score"]] = row["n"]

    pairs = PreferencePair.objects.filter(iteration__in=ids).values("iteration").order_by()
    for row in pairs.annotate(n=Count("id"), excluded=Count("id", filter=Q(excluded=True))):
        stats[row["iteration"]].pairs, stats[row["iteration"]].excluded = row["n"], row["excluded"]

    for iteration_id, n in _claim_counts(iterations).items():
        stats[iteration_id].claims = n
    for iteration_id, agreement in _agreement(ids).items():
        stats[iteration_id].agreement = agreement
    return list(stats.values())


# Only the divide stage adds claims, so an iteration past it has a fixed number of them.
_SETTLED = {IterationStatus.REVIEWING, IterationStatus.TRAINING, IterationStatus.EVALUATING, IterationStatus.DONE}


def _claim_counts(iterations: list[Iteration]) -> dict[int, int]:
    """Claims per iteration. Counting them is a pass over every claim, so a settled iteration's count is cached."""

    def key(it):
        return f"webapp:claims:{it.pk}:{it.created_at.timestamp()}"

    settled = [it for it in iterations if it.status in _SETTLED]
    cached = cache.get_many([key(it) for it in settled])
    counts = {it.pk: cached[key(it)] for it in settled if key(it) in cached}
    todo = [it.pk for it in iterations if it.pk not in counts]
    if todo:
        rows = Claim.objects.filter(response__iteration__in=todo).values("response__iteration").order_by()
        fresh = {row["response__iteration"]: row["n"] for row in rows.annotate(n=Count("id"))}
        counts |= {pk: fresh.get(pk, 0) for pk in todo}
        cache.set_many({key(it): counts[it.pk] for it in settled if it.pk in todo}, timeout=None)
    return counts


def _agreement(iteration_ids: list[int]) -> dict[int, Agreement]:
    """Per iteration: of the claims a reviewer decided that the labeler also judged, how many they agree on.

    Read from the reviews (few) rather than the claims (many): each claim's latest decisive review, as in
    `Claim.objects.with_effective_verdict()` (undone ones skipped), against the iteration labeler's verdict.
    """
    rows = (
        Review.objects.decisive()
        .filter(
            claim__response__iteration__in=iteration_ids,
            claim__verdicts__labeler=F("claim__response__iteration__labeler"),
        )
        .order_by("claim", "created_at", "pk")
        .values_list(
            "claim",
            "claim__response__iteration",
            "decision",
            "claim__verdicts__p_yes",
            "claim__verdicts__p_no",
            "claim__response__iteration__margin",
        )
    )
    latest = {claim: rest for claim, *rest in rows}
    counts = defaultdict(lambda: [0, 0])
    for iteration_id, decision, p_yes, p_no, margin in latest.values():
        counts[iteration_id][0] += (decision == Decision.CORRECT) == accepts(p_yes, p_no, margin)
        counts[iteration_id][1] += 1
    return {iteration_id: Agreement(agree, n) for iteration_id, (agree, n) in counts.items()}
