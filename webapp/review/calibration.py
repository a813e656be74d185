"""An iteration's labeler against the truth: its reliability diagram, calibration error, best margin, the "what
if" of a margin on the pairs, and how often a second labeler agrees with it.

The truth of a claim is the picture's known objects where the instruction carries them (the shapes world;
labeling.shapes.question_is_true), else a reviewer's standing decision. Reads only: applying a margin is the
review service's (webapp.review.service.apply_margin).
"""

from dataclasses import dataclass

from django.db.models import F, OuterRef, Subquery

from labeling.calibration import (
    Bin,
    MarginFit,
    PairChanges,
    best_margin,
    expected_calibration_error,
    pair_changes,
    reliability,
)
from labeling.shapes import question_is_true
from webapp.iterations.config import second_labeler
from webapp.models import Decision, Iteration, PreferencePair, Review, Verdict
from webapp.review.service import pairs_under


@dataclass(frozen=True)
class Calibration:
    bins: list[Bin]
    ece: float | None
    fit: MarginFit | None
    from_truth: int  # claims whose truth came from the picture's known objects
    from_reviews: int  # claims whose truth came from a reviewer
    reviewed: int  # claims with a reviewer's standing decision, those of known truth too


def truth_points(iteration: Iteration) -> tuple[list[tuple[float, float, bool]], int, int, int]:
    """(p_yes, p_no, claim is true) of the iteration's claims whose truth is known, how many came from the
    pictures' objects and from reviewers, and how many claims reviewers decided (where the picture's objects are
    known they are the truth, so "0 decided by reviewers" was shown after 12 reviews)."""
    verdicts = Verdict.objects.filter(labeler=iteration.labeler, claim__response__iteration=iteration)
    known = verdicts.filter(claim__response__instruction__objects_present__isnull=False).values_list(
        "claim", "claim__question", "claim__response__instruction__objects_present", "p_yes", "p_no"
    )
    points = {}
    for claim, question, objects, p_yes, p_no in known.iterator():
        true = question_is_true(question, objects)
        if true is not None:
            points[claim] = (p_yes, p_no, true)
    from_truth = len(points)
    decisive = Review.objects.decisive().filter(claim=OuterRef("claim")).order_by("-created_at", "-pk")
    reviewed = (
        verdicts.annotate(decision=Subquery(decisive.values("decision")[:1]))
        .filter(decision__isnull=False)
        .values_list("claim", "p_yes", "p_no", "decision")
    )
    decided = 0
    for claim, p_yes, p_no, decision in reviewed:
        points.setdefault(claim, (p_yes, p_no, decision == Decision.CORRECT))
        decided += 1
    return list(points.values()), from_truth, len(points) - from_truth, decided


def calibration(iteration: Iteration) -> Calibration:
    points, from_truth, from_reviews, reviewed = truth_points(iteration)
    bins = reliability((p_yes, true) for p_yes, _, true in points)
    fit = best_margin(points)
    return Calibration(bins, expected_calibration_error(bins), fit, from_truth, from_reviews, reviewed)


def what_if(iteration: Iteration, margin: float) -> PairChanges:
    """How the iteration's stored pairs would change were they rebuilt under `margin`."""
    stored = PreferencePair.objects.filter(iteration=iteration).values_list("chosen", "rejected", "score_gap")
    return pair_changes(stored, [(p.chosen_id, p.rejected_id, p.score_gap) for p in pairs_under(iteration, margin)])


@dataclass(frozen=True)
class LabelerAgreement:
    """Of the claims both labelers judged, on how many their verdicts (p_yes > p_no) agree."""

    second: str
    agree: int
    n: int

    @property
    def rate(self) -> float | None:
        return self.agree / self.n if self.n else None


def labeler_agreement(iteration: Iteration) -> LabelerAgreement | None:
    """The second labeler's agreement with the first; None when the iteration has none."""
    second = second_labeler(iteration)
    if second is None:
        return None
    other = Verdict.objects.filter(claim=OuterRef("claim"), labeler=second)
    both = Verdict.objects.filter(labeler=iteration.labeler, claim__response__iteration=iteration).annotate(
        other=Subquery(other.values("accepted")[:1])
    )
    both = both.filter(other__isnull=False)
    return LabelerAgreement(second, both.filter(accepted=F("other")).count(), both.count())
