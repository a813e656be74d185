"""Every invariant of the data model is enforced by the database, and the effective-verdict rule."""

import pytest
from django.db import IntegrityError, transaction

from tests.factories import (
    ClaimFactory,
    InstructionFactory,
    IterationFactory,
    JobFactory,
    PreferencePairFactory,
    ResponseFactory,
    ReviewFactory,
    VerdictFactory,
)
from webapp.models import (
    VERDICT_ROW,
    Claim,
    Decision,
    Iteration,
    IterationStatus,
    PreferencePair,
    Response,
    Review,
    Verdict,
    effective_verdicts,
    response_scores,
    with_labeler_verdict,
)

pytestmark = pytest.mark.django_db


def test_it_refuses_a_second_response_with_the_same_seed():
    first = ResponseFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ResponseFactory(iteration=first.iteration, instruction=first.instruction, seed=first.seed)


def test_it_refuses_a_second_verdict_from_the_same_labeler():
    verdict = VerdictFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        VerdictFactory(claim=verdict.claim, labeler=verdict.labeler)
    VerdictFactory(claim=verdict.claim, labeler="another-labeler")  # a second labeler is fine


@pytest.mark.parametrize(
    "fields",
    [
        {"p_yes": 1.5, "p_no": 0.0, "accepted": True},
        {"p_yes": 0.2, "p_no": -0.1, "accepted": True},
        {"p_yes": 0.2, "p_no": 0.7, "accepted": True},
        {"p_yes": 0.7, "p_no": 0.2, "accepted": False},
        {"p_yes": 0.4, "p_no": 0.4, "accepted": True},
    ],
)
def test_it_refuses_inconsistent_verdicts(fields):
    claim = ClaimFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Verdict.objects.create(claim=claim, labeler="x", **fields)


def test_it_refuses_a_pair_of_a_response_with_itself():
    response = ResponseFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        PreferencePair.objects.create(
            iteration=response.iteration,
            instruction=response.instruction,
            chosen=response,
            rejected=response,
            score_gap=1,
        )


def test_it_refuses_a_pair_across_instructions():
    iteration = IterationFactory()
    a, b = ResponseFactory(iteration=iteration), ResponseFactory(iteration=iteration)
    with pytest.raises(IntegrityError), transaction.atomic():
        PreferencePair.objects.create(iteration=iteration, instruction=a.instruction, chosen=a, rejected=b, score_gap=1)


def test_it_refuses_a_pair_outside_its_iteration():
    instruction = InstructionFactory()
    a = ResponseFactory(instruction=instruction)
    b = ResponseFactory(instruction=instruction)  # another iteration
    with pytest.raises(IntegrityError), transaction.atomic():
        PreferencePair.objects.create(iteration=a.iteration, instruction=instruction, chosen=a, rejected=b, score_gap=1)


def test_it_refuses_to_move_a_pair_onto_another_instruction():
    pair = PreferencePairFactory()
    pair.instruction = InstructionFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        pair.save()


def test_it_refuses_a_duplicate_pair_and_a_zero_gap():
    pair = PreferencePairFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        PreferencePair.objects.create(
            iteration=pair.iteration,
            instruction=pair.instruction,
            chosen=pair.chosen,
            rejected=pair.rejected,
            score_gap=1,
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        PreferencePair.objects.create(
            iteration=pair.iteration,
            instruction=pair.instruction,
            chosen=pair.rejected,
            rejected=pair.chosen,
            score_gap=0,
        )


@pytest.mark.parametrize(
    "factory, field, value",
    [
        (IterationFactory, "status", "sleeping"),
        (IterationFactory, "engine", "magic"),
        (IterationFactory, "number", 0),
        (ResponseFactory, "status", "weird"),
        (ResponseFactory, "score", 1),
        (ReviewFactory, "decision", "maybe"),
        (JobFactory, "state", "lost"),
        (JobFactory, "kind", "dream"),
        (JobFactory, "done", 11),
        (InstructionFactory, "split", "test"),
        (InstructionFactory, "question", ""),
    ],
)
def test_it_refuses_values_outside_the_choices(factory, field, value):
    with pytest.raises(IntegrityError), transaction.atomic():
        factory(**{field: value})


def test_it_refuses_duplicate_claim_indexes_instructions_and_job_chunks():
    claim = ClaimFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ClaimFactory(response=claim.response, index=claim.index)
    instruction = InstructionFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        InstructionFactory(
            source=instruction.source, image_sha256=instruction.image_sha256, question=instruction.question
        )
    job = JobFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        JobFactory(iteration=job.iteration, kind=job.kind, chunk=job.chunk)
    with pytest.raises(IntegrityError), transaction.atomic():
        IterationFactory(number=job.iteration.number)


def test_reviews_are_append_only():
    review = ReviewFactory()
    review.decision = Decision.CORRECT
    with pytest.raises(TypeError):
        review.save()
    with pytest.raises(TypeError):
        review.delete()
    with pytest.raises(TypeError):
        Review.objects.filter(pk=review.pk).update(decision=Decision.CORRECT)
    with pytest.raises(TypeError):
        Review.objects.all().delete()
    assert Review.objects.get().decision == Decision.HALLUCINATED


def effective(claim):
    """The rule in Python and in SQL must agree; return the shared answer."""
    annotated = Claim.objects.with_effective_verdict().get(pk=claim.pk)
    rows = with_labeler_verdict(Claim.objects.filter(pk=claim.pk), claim.response.iteration.labeler, 0.0)
    python = effective_verdicts(rows.values_list(*VERDICT_ROW))[claim.pk]
    assert (annotated.effective_accepted, annotated.decided_by) == (python.accepted, python.decided_by)
    assert annotated.p_yes == python.p_yes
    assert annotated.effective_accepted == claim.effective_accepted()
    return annotated.effective_accepted, annotated.decided_by


def test_effective_verdict_is_the_labelers_without_reviews():
    claim = ClaimFactory()
    assert effective(claim) == (None, None)
    VerdictFactory(claim=claim, p_yes=0.2, p_no=0.7)
    assert effective(claim) == (False, "labeler")


def test_effective_verdict_is_the_latest_review(alice, bob):
    claim = ClaimFactory()
    VerdictFactory(claim=claim, p_yes=0.9, p_no=0.05)
    ReviewFactory(claim=claim, reviewer=alice, decision=Decision.HALLUCINATED)
    assert effective(claim) == (False, "reviewer")
    ReviewFactory(claim=claim, reviewer=bob, decision=Decision.CORRECT)
    assert effective(claim) == (True, "reviewer")
    ReviewFactory(claim=claim, reviewer=alice, decision=Decision.UNSURE)
    assert effective(claim) == (True, "reviewer")


def test_a_review_stores_its_claims_iteration(alice):
    claim = ClaimFactory()
    review = ReviewFactory(claim=claim, reviewer=alice)
    assert Review.objects.get(pk=review.pk).iteration_id == claim.response.iteration_id


def test_a_review_of_any_kind_marks_its_answer_reviewed(alice):
    claim, other = ClaimFactory(), ClaimFactory()
    ReviewFactory(claim=claim, reviewer=alice, decision=Decision.UNSURE)
    assert Response.objects.get(pk=claim.response_id).reviewed
    assert not Response.objects.get(pk=other.response_id).reviewed


def test_an_unsure_review_leaves_the_labelers_verdict(alice):
    claim = ClaimFactory()
    VerdictFactory(claim=claim, p_yes=0.9, p_no=0.05)
    ReviewFactory(claim=claim, reviewer=alice, decision=Decision.UNSURE)
    assert effective(claim) == (True, "labeler")


def test_an_unsure_review_leaves_the_last_decision_standing(alice):
    claim = ClaimFactory()
    VerdictFactory(claim=claim, p_yes=0.9, p_no=0.05)
    ReviewFactory(claim=claim, reviewer=alice, decision=Decision.UNSURE)
    assert effective(claim) == (True, "labeler")
    ReviewFactory(claim=claim, reviewer=alice, decision=Decision.HALLUCINATED)
    ReviewFactory(claim=claim, reviewer=alice, decision=Decision.UNSURE)
    assert effective(claim) == (False, "reviewer")


def test_effective_verdict_reads_the_iterations_labeler_only():
    claim = ClaimFactory(response__iteration__labeler="big-labeler")
    VerdictFactory(claim=claim, labeler="other-labeler", p_yes=0.1, p_no=0.8)
    assert effective(claim) == (None, None)
    VerdictFactory(claim=claim, labeler="big-labeler", p_yes=0.8, p_no=0.1)
    assert effective(claim) == (True, "labeler")


def test_scores_count_effective_rejections(alice):
    response = ResponseFactory()
    claims = [ClaimFactory(response=response, index=i) for i in range(3)]
    VerdictFactory(claim=claims[0], p_yes=0.1, p_no=0.8)
    VerdictFactory(claim=claims[1], p_yes=0.1, p_no=0.8)
    VerdictFactory(claim=claims[2], p_yes=0.8, p_no=0.1)
    assert response_scores(Response.objects.all()).get().n_rejected == 2
    ReviewFactory(claim=claims[0], reviewer=alice, decision=Decision.CORRECT)
    ReviewFactory(claim=claims[2], reviewer=alice, decision=Decision.HALLUCINATED)
    ReviewFactory(claim=claims[1], reviewer=alice, decision=Decision.CORRECT)
    assert response_scores(Response.objects.all()).get().n_rejected == 1


def test_iteration_policy_defaults_to_the_last_done_iterations_checkpoint():
    assert Iteration.default_policy() == ""
    IterationFactory(number=1, checkpoint="/models/it1", status=IterationStatus.DONE)
    IterationFactory(number=2, checkpoint="/models/it2", status=IterationStatus.EVALUATING)
    IterationFactory(number=3)
    assert Iteration.default_policy() == "/models/it1"
