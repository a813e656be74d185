"""The review pages' read queries, called directly: what they return for the templates to show."""

import dataclasses

import pytest
from django.db import connection
from django.http import Http404, QueryDict
from django.test.utils import CaptureQueriesContext

from tests.factories import IterationFactory, ReviewFactory
from tests.review_data import reviewing_iteration
from webapp.iterations.counts import refresh as refresh_counts
from webapp.models import Claim, Decision, IterationStatus, PreferencePair, Response, Review
from webapp.review import selectors
from webapp.review.service import record_review, undo_review

pytestmark = pytest.mark.django_db


def answer(iteration, seed):
    return Response.objects.get(iteration=iteration, seed=seed)


def claim(iteration, seed, index):
    return Claim.objects.select_related("response").get(response__iteration=iteration, response__seed=seed, index=index)


@pytest.fixture
def iteration():
    """Answer 0 (score 0) is chosen over answer 1 (score −1: its claim 1, p_yes 0.45, is rejected)."""
    return reviewing_iteration([[0.9, 0.8], [0.9, 0.45]])


def view_of(iteration, claim_ids=None):
    return selectors.pair_view(iteration, answer(iteration, 0).pk, answer(iteration, 1).pk, claim_ids)


def test_the_pair_view_shows_each_sides_claims_with_the_labelers_verdicts(iteration):
    view = view_of(iteration)
    assert (view.left.heading, view.right.heading) == ("Chosen", "Rejected")
    assert (view.left.score, view.right.score) == (0, -1)
    assert [c.effective_accepted for c in view.left.claims] == [True, True]
    assert [c.effective_accepted for c in view.right.claims] == [True, False]
    assert {c.decided_by for c in view.changed} == {"labeler"} and len(view.changed) == 4
    assert view.right.claims[1].p_yes == pytest.approx(0.45)
    assert view.row == PreferencePair.objects.get(iteration=iteration)
    assert view.instruction == answer(iteration, 0).instruction
    assert view.open and not view.flipped and not view.tie and view.other_pairs == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.left.heading = "Rejected"


def test_the_pair_view_follows_reviews_to_a_tie_and_a_flip(alice, bob, iteration):
    record_review(claim(iteration, 0, 1), alice, Decision.HALLUCINATED)
    view = view_of(iteration)
    assert view.tie and view.row is None
    assert (view.left.heading, view.right.heading) == ("Listed as chosen", "Listed as rejected")
    decided = view.left.claims[1]
    assert (decided.effective_accepted, decided.decided_by, decided.decider) == (False, "reviewer", "alice")

    record_review(claim(iteration, 1, 1), bob, Decision.UNSURE)
    record_review(claim(iteration, 1, 1), alice, Decision.CORRECT)
    record_review(claim(iteration, 1, 1), bob, Decision.UNSURE)
    view = view_of(iteration)
    assert view.flipped and view.row.chosen_id == answer(iteration, 1).pk
    assert (view.left.heading, view.right.heading) == ("Was chosen, now rejected", "Was rejected, now chosen")
    overridden = view.right.claims[1]
    assert overridden.effective_accepted is True and overridden.decider == "alice"  # unsure decides nothing
    assert [(r.reviewer, r.decision) for r in overridden.history] == [
        ("bob", "unsure"),
        ("alice", "correct"),
        ("bob", "unsure"),
    ]


def test_the_pair_view_reads_only_the_claims_asked_for(iteration):
    only = claim(iteration, 1, 1)
    view = view_of(iteration, [only.pk])
    assert [c.pk for c in view.changed] == [only.pk]
    assert view.left.claims == [] and [c.pk for c in view.right.claims] == [only.pk]


def test_a_pair_of_answers_to_two_instructions_is_not_found():
    iteration = reviewing_iteration([[0.9], [0.2]], [[0.9], [0.3]])
    first, _, third, _ = Response.objects.filter(iteration=iteration).order_by("instruction", "seed")
    with pytest.raises(Http404):
        selectors.pair_view(iteration, first.pk, third.pk)


def test_the_queue_view_shows_an_unreviewed_claim_with_the_labelers_verdict(alice, iteration):
    queue = selectors.queue_view(iteration, alice)
    item = queue.item
    most_uncertain = claim(iteration, 1, 1)
    assert item.claim.pk == most_uncertain.pk
    assert (item.claim.effective_accepted, item.claim.decided_by, item.claim.decider) == (False, "labeler", None)
    assert item.claim.history == [] and item.claim.divided_by == most_uncertain.divided_by
    assert item.claim.p_yes == pytest.approx(0.45) and item.p_no == pytest.approx(0.55)
    answer, instruction = most_uncertain.response, most_uncertain.response.instruction
    assert (item.response.pk, item.response.text, item.response.seed) == (answer.pk, answer.text, answer.seed)
    assert (item.instruction.pk, item.instruction.question) == (instruction.pk, instruction.question)
    assert item.instruction.image_url == instruction.image.url
    assert (queue.waiting, queue.window, queue.done, queue.open) == (4, selectors.QUEUE_WINDOW, 0, True)

    ReviewFactory(claim=most_uncertain, reviewer=alice, decision=Decision.UNSURE)
    queue = selectors.queue_view(iteration, alice)
    assert queue.item.claim.pk != most_uncertain.pk and (queue.waiting, queue.done) == (3, 1)


def test_an_empty_queue_has_no_item(alice):
    iteration = reviewing_iteration([[0.9]])
    ReviewFactory(claim=claim(iteration, 0, 0), reviewer=alice)
    queue = selectors.queue_view(iteration, alice)
    assert queue.item is None and queue.waiting == 0 and queue.done == 1


def test_reviewed_per_instruction_counts_claims_with_a_review_standing(alice, bob):
    """A decided claim counts once however many reviews stand on it; an unsure counts; a decision undone does not,
    nor does its undo; claims of instructions not asked about are not counted."""
    iteration = reviewing_iteration([[0.9, 0.8], [0.7, 0.6]], [[0.9, 0.8]], [[0.9]])
    first, second, third = (instruction_id(iteration, n) for n in range(3))
    claims = list(
        Claim.objects.filter(response__iteration=iteration).order_by("response__instruction", "response__seed", "index")
    )
    record_review(claims[0], alice, Decision.CORRECT)
    record_review(claims[0], bob, Decision.HALLUCINATED)
    record_review(claims[3], alice, Decision.UNSURE)
    undone = record_review(claims[4], alice, Decision.CORRECT)
    undo_review(Review.objects.select_related("claim__response").get(pk=undone.pk), alice)
    record_review(claims[6], alice, Decision.CORRECT)
    rows = [(0, 0, first), (0, 0, second)]  # (verdict, answer, instruction): only the instructions count
    assert selectors.reviewed_per_instruction(iteration, rows) == {first: 2}
    assert selectors.reviewed_per_instruction(iteration, rows + [(0, 0, third)]) == {first: 2, third: 1}


def instruction_id(iteration, n):
    """The id of the iteration's n-th instruction (by id)."""
    return sorted(iteration.instructions.values_list("pk", flat=True))[n]


def test_stratifying_spreads_one_answers_claims_out():
    # (verdict, answer, instruction), most uncertain first: one answer's three claims lead.
    rows = [(1, 10, 1), (2, 10, 1), (3, 10, 1), (4, 11, 1), (5, 20, 2), (6, 20, 2)]
    assert selectors.stratify(rows) == [1, 5, 4, 6, 2, 3]
    assert selectors.stratify([]) == []


def test_the_pair_list_shows_the_iteration_under_review_by_default():
    done = IterationFactory(status=IterationStatus.DONE)
    reviewing = reviewing_iteration([[0.9], [0.2]])
    latest = IterationFactory(status=IterationStatus.DRAFT)
    assert selectors.iteration_choice(None).shown == reviewing
    assert selectors.iteration_choice(done.number).shown == done
    assert selectors.iteration_choice(None).iterations == [latest, reviewing, done]
    with pytest.raises(Http404):
        selectors.iteration_choice(latest.number + 1)


def test_a_pair_page_carries_its_filters_into_the_next_pages_link(monkeypatch):
    monkeypatch.setattr(selectors, "PAGE_SIZE", 1)
    iteration = reviewing_iteration([[0.9, 0.9], [0.2, 0.2]], [[0.9], [0.2]])  # gaps 2, 1
    filters = dict.fromkeys(["reviewed", "excluded", "min_gap", "max_gap", "source", "sort", "after"])
    page = selectors.pair_page(iteration, filters | {"source": "test"}, QueryDict("source=test"))
    largest = PreferencePair.objects.get(iteration=iteration, score_gap=2)
    assert (
        [p.pk for p in page.pairs] == [largest.pk]
        and page.matching == 2
        and page.count_cap == selectors.JOINED_COUNT_CAP
    )
    assert page.next_cursor == f"2.{largest.pk}"
    assert QueryDict(page.next_query).dict() == {
        "source": "test",
        "iteration": str(iteration.number),
        "after": page.next_cursor,
    }
    last = selectors.pair_page(iteration, filters | {"after": page.next_cursor}, QueryDict())
    assert [p.score_gap for p in last.pairs] == [1] and last.next_cursor == ""


def test_the_pair_list_cuts_a_long_question():
    iteration = reviewing_iteration([[0.9, 0.9], [0.2, 0.2]], [[0.9], [0.2]])
    pairs = PreferencePair.objects.filter(iteration=iteration).select_related("instruction")
    (long_pair, long), (short_pair, short) = [(p.pk, p.instruction) for p in pairs]
    long.question, short.question = "w" * 91, "w" * 90
    long.save(), short.save()
    filters = dict.fromkeys(["reviewed", "excluded", "min_gap", "max_gap", "source", "sort", "after"])
    shown = {p.pk: p.question_shown for p in selectors.pair_page(iteration, filters, QueryDict()).pairs}
    assert shown == {long_pair: "w" * 89 + "…", short_pair: "w" * 90}


def test_a_list_filtered_through_answers_or_instructions_counts_fewer_matches(monkeypatch):
    """Counting pairs joined to their answers (reviewed) or instruction (source) is dearer a row."""
    monkeypatch.setattr(selectors, "COUNT_CAP", 2)
    monkeypatch.setattr(selectors, "JOINED_COUNT_CAP", 1)
    iteration = reviewing_iteration([[0.9, 0.9], [0.2, 0.2]], [[0.9], [0.2]], [[0.9], [0.3]])  # three pairs
    filters = dict.fromkeys(["reviewed", "excluded", "min_gap", "max_gap", "source", "sort", "after"])
    for applied, cap in [({"min_gap": 1}, 2), ({"reviewed": "no"}, 1), ({"source": "test"}, 1)]:
        page = selectors.pair_page(iteration, filters | applied, QueryDict())
        assert (page.count_cap, page.matching) == (cap, cap + 1), applied


def test_an_unfiltered_list_says_its_exact_count_from_the_iterations_stored_counts(monkeypatch):
    """Past any cap, and without counting the pairs: the stored counts are kept by every writer."""
    monkeypatch.setattr(selectors, "COUNT_CAP", 1)
    iteration = reviewing_iteration([[0.9, 0.9], [0.2, 0.2]], [[0.9], [0.2]], [[0.9], [0.3]])  # three pairs
    PreferencePair.objects.filter(pk=PreferencePair.objects.filter(iteration=iteration).first().pk).update(
        excluded=True
    )
    refresh_counts(iteration)
    filters = dict.fromkeys(["reviewed", "excluded", "min_gap", "max_gap", "source", "sort", "after"])
    for applied, exact in [({}, 3), ({"excluded": "yes"}, 1), ({"excluded": "no"}, 2), ({"sort": "id"}, 3)]:
        with CaptureQueriesContext(connection) as queries:
            page = selectors.pair_page(iteration, filters | applied, QueryDict())
        assert (page.count_cap, page.matching) == (None, exact), applied
        assert not [q for q in queries if "COUNT(" in q["sql"].upper()], applied
