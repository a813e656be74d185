"""Reviews re-score answers and rebuild pairs at once; the spot-check queue serves uncertain verdicts first."""

import pytest

from labeling.combine import ScoredResponse, combine_pairs, make_pairs
from tests.factories import (
    ClaimFactory,
    InstructionFactory,
    IterationFactory,
    PreferencePairFactory,
    ResponseFactory,
    ReviewFactory,
    VerdictFactory,
)
from tests.review_data import reviewing_iteration
from webapp.accounts.permissions import can_review
from webapp.models import Claim, Decision, IterationStatus, PreferencePair, Response, Review, Verdict
from webapp.review.selectors import spot_check_queue, stratify
from webapp.review.service import ReviewClosed, rebuild_pairs, record_review, set_excluded

pytestmark = pytest.mark.django_db


def answer(iteration, seed):
    return Response.objects.get(iteration=iteration, seed=seed)


def claim(iteration, seed, index):
    return Claim.objects.select_related("response").get(response__iteration=iteration, response__seed=seed, index=index)


def pairs(iteration):
    return {
        (p.chosen.seed, p.rejected.seed, p.score_gap)
        for p in PreferencePair.objects.filter(iteration=iteration).select_related("chosen", "rejected")
    }


def test_it_lets_reviewers_and_staff_review(alice, bob, charlie):
    assert can_review(alice) and can_review(bob)
    assert not can_review(charlie)


def test_the_combine_stage_records_the_length_ratio_it_chose():
    iteration = reviewing_iteration([[0.9], [0.2]])
    assert iteration.metrics["length_ratio"] == 0.0
    assert pairs(iteration) == {(0, 1, 1)}
    assert [answer(iteration, s).score for s in (0, 1)] == [0, -1]


def test_a_hallucinated_override_rescores_the_answer_and_rebuilds_the_pairs(alice):
    iteration = reviewing_iteration([[0.9, 0.9], [0.9, 0.2], [0.2, 0.2]])
    assert pairs(iteration) == {(0, 1, 1), (0, 2, 2), (1, 2, 1)}
    record_review(claim(iteration, 0, 1), alice, Decision.HALLUCINATED)
    assert answer(iteration, 0).score == -1
    assert pairs(iteration) == {(0, 2, 1), (1, 2, 1)}  # 0 and 1 tie now


def test_a_pair_flips_through_a_tie(alice):
    iteration = reviewing_iteration([[0.9], [0.2]])
    record_review(claim(iteration, 0, 0), alice, Decision.HALLUCINATED)
    assert PreferencePair.objects.filter(iteration=iteration).count() == 0  # a tie
    record_review(claim(iteration, 1, 0), alice, Decision.CORRECT)
    (flipped,) = PreferencePair.objects.filter(iteration=iteration)
    assert (flipped.chosen.seed, flipped.rejected.seed) == (1, 0)


def test_a_pair_whose_gap_changes_keeps_its_row_and_its_exclusion(alice):
    iteration = reviewing_iteration([[0.9, 0.9], [0.2, 0.2]])
    row = PreferencePair.objects.get(iteration=iteration)
    set_excluded(row, alice, True)
    record_review(claim(iteration, 0, 0), alice, Decision.HALLUCINATED)
    kept = PreferencePair.objects.get(iteration=iteration)
    assert (kept.pk, kept.score_gap, kept.excluded, kept.excluded_by) == (row.pk, 1, True, alice)


def test_unsure_leaves_the_previous_decision_standing(alice, bob):
    iteration = reviewing_iteration([[0.9], [0.2]])
    c = claim(iteration, 0, 0)
    record_review(c, alice, Decision.HALLUCINATED)
    record_review(c, bob, Decision.UNSURE)
    assert Claim.objects.get(pk=c.pk).effective_accepted() is False
    assert answer(iteration, 0).score == -1
    assert list(c.reviews.order_by("pk").values_list("decision", flat=True)) == ["hallucinated", "unsure"]


def test_reviews_are_refused_outside_the_review_gate(alice):
    iteration = reviewing_iteration([[0.9], [0.2]])
    iteration.status = IterationStatus.TRAINING
    iteration.save()
    with pytest.raises(ReviewClosed):
        record_review(claim(iteration, 0, 0), alice, Decision.HALLUCINATED)
    with pytest.raises(ReviewClosed):
        set_excluded(PreferencePair.objects.get(iteration=iteration), alice, True)
    assert not Review.objects.exists()
    assert answer(iteration, 0).score == 0


def test_an_unknown_decision_is_refused(alice):
    iteration = reviewing_iteration([[0.9], [0.2]])
    with pytest.raises(ValueError):
        record_review(claim(iteration, 0, 0), alice, "maybe")


def test_a_rebuild_reuses_the_iterations_length_ratio(alice):
    # Per instruction the best r would keep the short chosen answer (r >= 0.8); the iteration chose r = 0.
    texts = {0: "Short answer.", 1: "A much longer answer with many words in it, ten in all."}
    iteration = reviewing_iteration([[0.9], [0.2]], texts=texts, config={"length_balance": False})
    assert pairs(iteration) == {(0, 1, 1)}
    iteration.config["length_balance"] = True
    iteration.metrics = {"length_ratio": 0.0}
    iteration.save()
    record_review(claim(iteration, 1, 0), alice, Decision.HALLUCINATED)  # no change in scores
    assert pairs(iteration) == set()


def test_an_iteration_combined_before_the_ratio_was_recorded_gets_it_once(alice):
    iteration = reviewing_iteration([[0.9], [0.2]])
    iteration.metrics = {"other": 1}
    iteration.save()
    record_review(claim(iteration, 1, 0), alice, Decision.HALLUCINATED)
    iteration.refresh_from_db()
    assert iteration.metrics == {"other": 1, "length_ratio": 0.0}


def test_imported_pairs_are_not_rebuilt_into_nothing(alice):
    iteration = IterationFactory(labeler="imported", status=IterationStatus.REVIEWING)
    pair = PreferencePairFactory(iteration=iteration)
    rebuild_pairs(iteration, pair.instruction_id)
    assert PreferencePair.objects.filter(pk=pair.pk).exists()
    set_excluded(pair, alice, True)
    pair.refresh_from_db()
    assert pair.excluded and pair.excluded_by == alice


def test_make_pairs_applies_a_given_length_ratio():
    responses = [
        ScoredResponse(1, "a", "one two", 0),
        ScoredResponse(2, "a", "one two three four", 1),  # chosen is shorter by half
        ScoredResponse(3, "b", "x y z", 0),
        ScoredResponse(4, "b", "x y z w v u", 1),
    ]
    assert [p.chosen_id for p in make_pairs(responses, length_ratio=0.5)] == [1, 3]
    assert make_pairs(responses, length_ratio=0.48) == []
    assert combine_pairs(responses).length_ratio == 0.5
    assert combine_pairs(responses, length_balance=False).length_ratio is None
    with pytest.raises(ValueError):
        make_pairs(responses, length_ratio=-0.1)


def p_yes(verdict_ids):
    verdicts = Verdict.objects.in_bulk(verdict_ids)
    return [round(verdicts[pk].p_yes, 2) for pk in verdict_ids]


def test_the_queue_serves_the_most_uncertain_unreviewed_claims_first(alice):
    iteration = reviewing_iteration([[0.9, 0.55], [0.3, 0.48]], [[0.99, 0.6]])
    queue = spot_check_queue(iteration)
    assert p_yes(queue)[:3] == [0.48, 0.6, 0.55]  # 0.55 shares 0.48's instruction
    first = Verdict.objects.get(pk=queue[0]).claim
    ReviewFactory(claim=first, reviewer=alice, decision=Decision.UNSURE)
    assert queue[0] not in spot_check_queue(iteration)
    assert len(spot_check_queue(iteration)) == 5


def test_the_queue_keeps_spreading_after_a_decision(alice):
    """Found on first use: the round-robin began afresh on every request, so after one decision the same claim
    of the same picture (its answers all say it, equally uncertain) was served again, five times in a row."""
    iteration = reviewing_iteration([[0.5], [0.5], [0.5]], [[0.6]])
    same_picture = lambda queue: [Verdict.objects.get(pk=pk).claim.response.instruction_id for pk in queue]  # noqa: E731
    first, other = same_picture(spot_check_queue(iteration))[:2]
    assert first != other
    ReviewFactory(claim=Verdict.objects.get(pk=spot_check_queue(iteration)[0]).claim, reviewer=alice)
    assert same_picture(spot_check_queue(iteration)) == [other, first, first]  # the other picture's turn now
    undo = Review.objects.get()
    ReviewFactory(claim=undo.claim, reviewer=alice, decision=Decision.UNDO, undoes=undo)
    assert same_picture(spot_check_queue(iteration))[:2] == [first, other]  # an undone decision takes no turn


def test_the_queue_ignores_other_iterations_and_labelers():
    reviewing_iteration([[0.5]])
    iteration = reviewing_iteration([[0.9]])
    other = ClaimFactory(response=ResponseFactory(iteration=iteration, instruction=InstructionFactory()), index=0)
    VerdictFactory(claim=other, labeler="someone-else", p_yes=0.5, p_no=0.5)
    assert p_yes(spot_check_queue(iteration)) == [0.9]


def test_stratifying_goes_round_the_instructions_then_the_answers():
    # (verdict, answer, instruction), most uncertain first
    rows = [("a1", 10, 1), ("a2", 10, 1), ("b1", 11, 1), ("c1", 20, 2), ("a3", 10, 1)]
    assert stratify(rows) == ["a1", "c1", "b1", "a2", "a3"]


def test_an_undone_decision_leaves_its_answer_unreviewed(alice):
    """Found on first use: after a decision and its undo the pair list still said "Reviewed: yes"."""
    iteration = reviewing_iteration([[0.9, 0.8], [0.9, 0.2]])
    claim = Claim.objects.filter(response__iteration=iteration).order_by("pk").first()
    decision = ReviewFactory(claim=claim, reviewer=alice, decision=Decision.HALLUCINATED)
    assert Response.objects.get(pk=claim.response_id).reviewed is True
    ReviewFactory(claim=claim, reviewer=alice, decision=Decision.UNDO, undoes=decision)
    assert Response.objects.get(pk=claim.response_id).reviewed is False
    ReviewFactory(claim=claim, reviewer=alice, decision=Decision.CORRECT)
    assert Response.objects.get(pk=claim.response_id).reviewed is True
