"""reject_repeats: a claim repeating an earlier claim of its answer counts as rejected, in every place that scores
answers (combine, a review's rebuild, a margin, the export), so a repeat never buys a better score than saying
less. Off by default: the paper's score."""

import pytest

from tests.factories import InstructionFactory, IterationFactory, JobFactory, ResponseFactory, VerdictFactory
from webapp.jobs import rlaifv
from webapp.models import Claim, Decision, IterationStatus, JobKind, Response, ResponseStatus
from webapp.review.service import apply_margin, record_review
from webapp.transfer.exporting import ExportResult, effective_pairs

pytestmark = pytest.mark.django_db

REPEATS = "There is a red circle. There is a red circle."
ABSENT = "There is a red circle. There is a blue square."
SHORT = "There is a red circle."


def gate(reject_repeats: bool, answers=((REPEATS, [0.9, 0.9]), (ABSENT, [0.9, 0.2]))):
    """An iteration at its review gate with one instruction; its answers are (text, p_yes per sentence)."""
    iteration = IterationFactory(
        status=IterationStatus.DIVIDING, config={"pairs_per_instruction": 45, "reject_repeats": reject_repeats}
    )
    instruction = InstructionFactory()
    iteration.instructions.add(instruction)
    for seed, (text, _) in enumerate(answers):
        ResponseFactory(iteration=iteration, instruction=instruction, seed=seed, text=text)
    rlaifv.divide(JobFactory(iteration=iteration, kind=JobKind.DIVIDE, instruction_ids=[instruction.pk], total=0))
    iteration.status = IterationStatus.COMBINING
    iteration.save(update_fields=["status"])
    for seed, (_, p_yes) in enumerate(answers):
        response = Response.objects.get(iteration=iteration, seed=seed)
        response.status = ResponseStatus.LABELED
        response.save(update_fields=["status"])
        for claim, p in zip(response.claims.order_by("index"), p_yes, strict=True):
            VerdictFactory(claim=claim, p_yes=p, p_no=round(1 - p, 6))
    rlaifv.combine(JobFactory(iteration=iteration, kind=JobKind.COMBINE, total=0))
    iteration.refresh_from_db()
    iteration.status = IterationStatus.REVIEWING
    iteration.save(update_fields=["status"])
    return iteration


def pairs(iteration):
    return sorted((p.chosen.seed, p.rejected.seed) for p in iteration.pairs.select_related("chosen", "rejected"))


def test_divide_counts_the_repeated_claims_of_each_answer():
    iteration = gate(False)
    assert dict(iteration.responses.values_list("seed", "repeated_claims")) == {0: 1, 1: 0}


def test_by_default_a_repeat_beats_naming_an_absent_object():
    """The paper's score: the answer that repeats the red circle instead of naming the absent blue square wins."""
    assert pairs(gate(False)) == [(0, 1)]


def test_rejecting_repeats_makes_them_no_better_than_a_hallucination():
    iteration = gate(True)
    assert dict(iteration.responses.values_list("seed", "score")) == {0: -1, 1: -1}
    assert pairs(iteration) == []  # a tie: no pair teaches repeating
    with_short = gate(True, ((REPEATS, [0.9, 0.9]), (ABSENT, [0.9, 0.2]), (SHORT, [0.9])))
    assert pairs(with_short) == [(2, 0), (2, 1)]  # saying less wins over both


def test_a_review_a_margin_and_the_export_keep_counting_repeats(alice):
    iteration = gate(True)
    blue_square = Claim.objects.get(response__iteration=iteration, response__seed=1, index=1)
    record_review(blue_square, alice, Decision.CORRECT)  # the square is there after all: that answer is right
    iteration.refresh_from_db()
    assert pairs(iteration) == [(1, 0)]  # still not the repeating one
    apply_margin(iteration.pk, alice, 0.05)
    assert pairs(iteration) == [(1, 0)]
    tally = ExportResult()
    exported = list(effective_pairs(iteration, tally))
    assert [(p.chosen, p.rejected) for p in exported] == [(ABSENT, REPEATS)] and tally.flipped == 0
