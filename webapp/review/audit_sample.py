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
from django.db.models import Exists, F, OuterRef, Subquery

from labeling.audit import STRATIFIED, Estimate, Stratum, draw, stratified_estimate, uniform_estimate
from labeling.calibration import accepts
from webapp.accounts import audit
from webapp.models import AuditAction, AuditItem, AuditSample, Decision, Iteration, Review, Verdict

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
        audit.record(AuditAction.DRAW_AUDIT, iteration=iteration, target=f"audit sample {sample.pk}", design=design,
                     size=len(drawn.items), seed=seed)  # fmt: skip
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
    return audit_results([sample])[sample.pk]


def audit_results(samples: list[AuditSample]) -> dict[int, AuditResult]:
    """By sample: the labeler's error rate over its whole iteration as the sample's audit reviews estimate it, in
    three queries for any number of samples. A claim counts once its latest standing audit review decided it,
    against the labeler's verdict under the iteration's margin."""
    if not samples:
        return {}
    strata = {
        (sample, claim): stratum
        for sample, claim, stratum in AuditItem.objects.filter(sample__in=samples).values_list(
            "sample", "claim", "stratum"
        )
    }
    decided = {}
    reviews = Review.objects.standing().filter(audit__in=samples).order_by("created_at", "pk")
    for sample, claim, decision in reviews.values_list("audit", "claim", "decision"):
        decided[sample, claim] = decision  # the latest wins
    verdicts = Verdict.objects.filter(
        claim__in={claim for _, claim in decided}, labeler=F("claim__response__iteration__labeler")
    )
    accepted = {
        claim: accepts(p_yes, p_no, margin)
        for claim, p_yes, p_no, margin in verdicts.values_list(
            "claim", "p_yes", "p_no", "claim__response__iteration__margin"
        )
    }
    reviewed, errors, unsure = Counter(), Counter(), Counter()
    for (sample, claim), decision in decided.items():
        if decision == Decision.UNSURE:
            unsure[sample] += 1
        elif claim in accepted:
            reviewed[sample, strata[sample, claim]] += 1
            errors[sample, strata[sample, claim]] += accepted[claim] != (decision == Decision.CORRECT)
    drawn = Counter(sample for sample, _ in strata)
    results = {}
    for sample in samples:
        bands = [
            Stratum(population, reviewed[sample.pk, band], errors[sample.pk, band])
            for band, population in enumerate(sample.populations)
        ]
        estimate = (
            stratified_estimate(bands)
            if sample.design == STRATIFIED
            else uniform_estimate(bands[0].errors, bands[0].reviewed, bands[0].population)
        )
        results[sample.pk] = AuditResult(sample, estimate, drawn[sample.pk], unsure[sample.pk])
    return results


def latest_audits(iterations: list[Iteration]) -> dict[int, AuditResult]:
    """Each iteration's latest audit, for those that have one; `iterations` annotated with `latest_audit` (see
    `with_latest_audit`), so iterations never audited cost no query."""
    ids = [it.latest_audit for it in iterations if it.latest_audit is not None]
    samples = list(AuditSample.objects.filter(pk__in=ids)) if ids else []
    return {result.sample.iteration_id: result for result in audit_results(samples).values()}


def with_latest_audit(iterations):
    """Iterations (a queryset) annotated with the id of their latest audit sample (`latest_audit`, or None)."""
    latest = AuditSample.objects.filter(iteration=OuterRef("pk")).order_by("-pk").values("pk")[:1]
    return iterations.annotate(latest_audit=Subquery(latest))
