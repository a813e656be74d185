"""The audit sample: claims drawn at random for reviewers to judge, and the labeler's error rate they estimate.

Staff draw a sample (`start_audit`: uniform, or stratified by p_yes; labeling.audit draws it) and reviewers
work through it in its random order on the audit page, which shows no verdict (they judge the claim against
the picture, not the labeler's answer). Only reviews made there (`Review.audit`) count towards the estimate:
the spot-check queue serves uncertain claims first and would bias it. An audit review is a review like any
other otherwise: it sets the claim's verdict, its answer's score and the pairs.
"""

import random
from collections import Counter
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Exists, OuterRef

from labeling.audit import STRATIFIED, Estimate, Stratum, draw, stratified_estimate, uniform_estimate
from labeling.calibration import accepts
from webapp.models import AuditItem, AuditSample, Decision, Iteration, Review, Verdict

DEFAULT_SIZE = 200
MAX_SIZE = 5000
SHOWN = 5  # the drawn claims a page shows at once, for j/k to move between


class NothingToAudit(Exception):
    """The iteration has no claims the labeler judged."""


def start_audit(iteration: Iteration, user, design: str, size: int, seed: int | None = None) -> AuditSample:
    """Draw a new audit sample of `size` claims of the iteration; from now on its audit page serves it."""
    if not 1 <= size <= MAX_SIZE:
        raise ValueError(f"an audit sample holds 1 to {MAX_SIZE} claims, not {size}")
    claims = list(
        Verdict.objects.filter(labeler=iteration.labeler, claim__response__iteration=iteration).values_list(
            "claim", "p_yes"
        )
    )
    if not claims:
        raise NothingToAudit(f"{iteration} has no labeled claims to audit yet")
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    drawn = draw(claims, size, design, random.Random(seed))
    with transaction.atomic():
        sample = AuditSample.objects.create(
            iteration=iteration, design=design, seed=seed, populations=drawn.populations, created_by=user
        )
        AuditItem.objects.bulk_create(
            AuditItem(sample=sample, claim_id=claim, stratum=stratum, position=position)
            for position, (claim, stratum) in enumerate(drawn.items)
        )
    return sample


def latest_sample(iteration: Iteration) -> AuditSample | None:
    return AuditSample.objects.filter(iteration=iteration).order_by("-pk").first()


def waiting_items(sample: AuditSample):
    """The drawn claims not yet judged in this audit (none of its reviews of them stands), in serving order."""
    judged = Review.objects.standing().filter(audit=sample, claim=OuterRef("claim"))
    return AuditItem.objects.filter(sample=sample).filter(~Exists(judged)).order_by("position")


@dataclass(frozen=True)
class AuditResult:
    """A sample's estimate of the labeler's error rate, and its progress."""

    sample: AuditSample
    estimate: Estimate
    drawn: int
    unsure: int  # audited claims judged unsure: left out of the estimate

    @property
    def stratified(self) -> bool:
        return self.sample.design == STRATIFIED


def audit_result(sample: AuditSample) -> AuditResult:
    """The labeler's error rate over the whole iteration as the sample's audit reviews estimate it: a claim
    counts once its latest standing audit review decided it, against the labeler's verdict under the
    iteration's margin."""
    iteration = sample.iteration
    items = dict(AuditItem.objects.filter(sample=sample).values_list("claim", "stratum"))
    decided = dict(
        Review.objects.standing().filter(audit=sample).order_by("created_at", "pk").values_list("claim", "decision")
    )
    judged = Verdict.objects.filter(labeler=iteration.labeler, claim__in=list(decided))
    verdicts = {claim: (p_yes, p_no) for claim, p_yes, p_no in judged.values_list("claim", "p_yes", "p_no")}
    reviewed, errors = Counter(), Counter()
    for claim, decision in decided.items():
        if decision == Decision.UNSURE or claim not in verdicts:
            continue
        reviewed[items[claim]] += 1
        errors[items[claim]] += accepts(*verdicts[claim], iteration.margin) != (decision == Decision.CORRECT)
    unsure = sum(decision == Decision.UNSURE for decision in decided.values())
    if sample.design == STRATIFIED:
        estimate = stratified_estimate(
            [Stratum(population, reviewed[band], errors[band]) for band, population in enumerate(sample.populations)]
        )
    else:
        estimate = uniform_estimate(errors[0], reviewed[0], sample.populations[0])
    return AuditResult(sample, estimate, len(items), unsure)


def audit_results(iterations: list[Iteration]) -> dict[int, AuditResult]:
    """Each iteration's latest audit, for those that have one."""
    latest = {}
    for sample in AuditSample.objects.filter(iteration__in=iterations).select_related("iteration").order_by("pk"):
        latest[sample.iteration_id] = sample
    return {iteration_id: audit_result(sample) for iteration_id, sample in latest.items()}
