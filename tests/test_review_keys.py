"""Undo (an appended review that takes a decision back), what a decision did as the queue shows it, the pair
page after an order flip, and pair rows that keep their ids across rebuilds."""

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from tests.factories import ReviewFactory
from tests.review_data import SESSION_RENEWAL, reviewing_iteration
from webapp.models import Claim, Decision, IterationStatus, PreferencePair, Response, Review, WithdrawnPair
from webapp.review import selectors
from webapp.review.service import CannotUndo, ReviewClosed, record_review, set_excluded, undo_review

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def answer(iteration, seed):
    return Response.objects.get(iteration=iteration, seed=seed)


def claim(iteration, seed, index=0):
    return Claim.objects.select_related("response").get(response__iteration=iteration, response__seed=seed, index=index)


def effective(c):
    """The claim's effective verdict, by the SQL rule and the Python one (they must agree)."""
    sql = Claim.objects.with_effective_verdict().get(pk=c.pk)
    assert sql.effective_accepted == c.effective_accepted()
    return sql.effective_accepted, sql.decided_by


def pair_ids(iteration, instruction=None):
    """Stored pairs (of one instruction) by their two answers' seeds (unordered): row id."""
    rows = PreferencePair.objects.filter(iteration=iteration).select_related("chosen", "rejected")
    if instruction is not None:
        rows = rows.filter(instruction=instruction)
    return {frozenset((p.chosen.seed, p.rejected.seed)): p.pk for p in rows}


def undo(review, user):
    return undo_review(Review.objects.select_related("claim__response").get(pk=review.pk), user)


def queue_url(iteration):
    return reverse("review-queue", args=[iteration.number])


def pair_url(iteration, left=0, right=1):
    return reverse("review-pair", args=[iteration.number, answer(iteration, left).pk, answer(iteration, right).pk])


@pytest.fixture
def iteration():
    """Answer 0 (score 0) is chosen over answer 1 (score −1: its claim 1, p_yes 0.45, is rejected)."""
    return reviewing_iteration([[0.9, 0.8], [0.9, 0.45]])


# --- the service --------------------------------------------------------------------------------------------


def test_an_undo_restores_the_verdict_the_score_and_the_pair(alice, iteration):
    decided = claim(iteration, 0, 1)
    pair = PreferencePair.objects.get(iteration=iteration)
    review = record_review(decided, alice, Decision.HALLUCINATED)
    assert effective(decided) == (False, "reviewer") and answer(iteration, 0).score == -1
    assert not PreferencePair.objects.filter(iteration=iteration).exists()  # a tie

    taken_back = undo(review, alice)
    assert (taken_back.decision, taken_back.undoes) == (Decision.UNDO, review)
    assert effective(decided) == (True, "labeler") and answer(iteration, 0).score == 0
    assert pair_ids(iteration) == {frozenset((0, 1)): pair.pk}  # its number, and so its link, kept
    assert PreferencePair.objects.get(iteration=iteration).chosen_id == pair.chosen_id
    assert not WithdrawnPair.objects.exists()
    assert list(decided.reviews.order_by("pk").values_list("decision", flat=True)) == ["hallucinated", "undo"]


def test_an_excluded_pair_comes_back_excluded_after_an_undo_and_the_counts_follow(alice, iteration):
    pair = PreferencePair.objects.get(iteration=iteration)
    set_excluded(pair, alice, True)
    assert (iteration.counts.pairs, iteration.counts.excluded) == (1, 1)
    review = record_review(claim(iteration, 0, 1), alice, Decision.HALLUCINATED)
    iteration.counts.refresh_from_db()
    assert (iteration.counts.pairs, iteration.counts.excluded) == (0, 0)
    assert WithdrawnPair.objects.get().pair_id == pair.pk
    undo(review, alice)
    back = PreferencePair.objects.get(iteration=iteration)
    assert (back.pk, back.excluded, back.excluded_by) == (pair.pk, True, alice)
    iteration.counts.refresh_from_db()
    assert (iteration.counts.pairs, iteration.counts.excluded) == (1, 1)


def test_undo_walks_back_through_a_reviewers_decisions(alice, bob, iteration):
    decided = claim(iteration, 1, 1)  # the labeler rejects it
    first = record_review(decided, alice, Decision.CORRECT)
    record_review(decided, bob, Decision.UNSURE)
    second = record_review(decided, alice, Decision.HALLUCINATED)
    undo(second, alice)
    assert effective(decided) == (True, "reviewer") and answer(iteration, 1).score == 0
    undo(first, alice)
    assert effective(decided) == (False, "labeler") and answer(iteration, 1).score == -1
    assert decided.reviews.count() == 5


def test_only_a_reviewers_own_standing_decision_can_be_undone(alice, bob, iteration):
    review = record_review(claim(iteration, 0, 1), alice, Decision.HALLUCINATED)
    with pytest.raises(CannotUndo, match="only the reviewer"):
        undo(review, bob)
    taken_back = undo(review, alice)
    with pytest.raises(CannotUndo, match="already undone"):
        undo(review, alice)
    with pytest.raises(CannotUndo, match="cannot be undone"):
        undo(taken_back, alice)
    other = record_review(claim(iteration, 0, 0), alice, Decision.UNSURE)
    iteration.status = IterationStatus.TRAINING
    iteration.save()
    with pytest.raises(ReviewClosed):
        undo(other, alice)
    assert Review.objects.count() == 3


def test_the_database_refuses_an_undo_that_names_no_decision_of_its_own(alice, bob, iteration):
    review = ReviewFactory(claim=claim(iteration, 0), reviewer=alice)
    bad = [
        {"claim": claim(iteration, 0), "reviewer": alice, "decision": Decision.UNDO},  # names nothing
        {"claim": claim(iteration, 0), "reviewer": alice, "decision": Decision.CORRECT, "undoes": review},
        {"claim": claim(iteration, 0), "reviewer": bob, "decision": Decision.UNDO, "undoes": review},
        {"claim": claim(iteration, 1), "reviewer": alice, "decision": Decision.UNDO, "undoes": review},
    ]
    for fields in bad:
        with pytest.raises(IntegrityError), transaction.atomic():
            Review.objects.create(**fields)
    assert Review.objects.count() == 1


@pytest.mark.parametrize("seed", range(2))
def test_pairs_that_survive_a_rebuild_keep_their_ids(alice, seed):
    # Eight instructions, each with five answers scoring 0, −1, −2, −3, −4: ten candidate pairs, two kept.
    answers = [[0.9] * 8 + [0.2] * i for i in range(5)]
    iteration = reviewing_iteration(*[answers] * 8, config={"pairs_per_instruction": 2, "seed": seed})
    for instruction in iteration.instructions.order_by("pk"):
        best = Response.objects.get(iteration=iteration, instruction=instruction, seed=0)
        before = pair_ids(iteration, instruction)
        # A tie of the two best answers: their pair stops being a candidate; the drawn pairs that still are
        # candidates stay drawn, in the same rows. Then a flip: the pair is a candidate again.
        for index in range(2):
            record_review(best.claims.get(index=index), alice, Decision.HALLUCINATED)
            after = pair_ids(iteration, instruction)
            assert {pair: after[pair] for pair in after if pair in before} == {
                pair: before[pair] for pair in after if pair in before
            }
            assert len(after.keys() & before.keys()) >= len(before) - 1
            before = after


# --- the spot-check queue -----------------------------------------------------------------------------------


def test_the_queue_shows_several_claims_each_linked_to_its_pair_page(client, alice):
    iteration = reviewing_iteration([[0.9, 0.6], [0.7, 0.2]], [[0.6], [0.6]])  # the second instruction ties
    client.force_login(alice)
    queue = client.get(queue_url(iteration)).context["queue"]
    assert len(queue.items) == min(selectors.QUEUE_SHOWN, queue.waiting)
    first, second = Response.objects.filter(iteration=iteration).order_by("instruction", "seed")[:2]
    for item in queue.items:
        left, right = item.pair
        assert item.response.pk in (left, right)
        if item.response.instruction_id == first.instruction_id:
            assert (left, right) == (first.pk, second.pk)  # its stored pair, chosen first
        assert client.get(reverse("review-pair", args=[iteration.number, left, right])).status_code == 200


def test_the_queue_shows_what_a_decision_did_and_undoes_it(client, alice, iteration):
    client.force_login(alice)
    first = claim(iteration, 1, 1)  # the most uncertain; the labeler rejects it
    response = client.post(queue_url(iteration), {"correct": first.pk}, **HTMX)
    decision = Review.objects.get()
    html = response.content.decode()
    assert 'data-score-before="-1" data-score-after="0"' in html and "score -1 → 0" in html
    assert f'name="undo" value="{decision.pk}" data-key="z"' in html
    assert f'href="{pair_url(iteration)}"' in html
    assert f'data-queue-claim="{first.pk}"' not in html and 'data-done="1"' in html

    response = client.post(queue_url(iteration), {"undo": decision.pk}, **HTMX)
    html = response.content.decode()
    assert 'data-score-before="0" data-score-after="-1"' in html and 'data-verdict-after="hallucinated"' in html
    assert 'name="undo"' not in html  # an undo is not undone
    assert f'data-queue-claim="{first.pk}"' in html and 'data-done="0"' in html  # back in the queue
    assert "(undone)" in html  # its history shows both reviews
    assert list(first.reviews.order_by("pk").values_list("decision", flat=True)) == ["correct", "undo"]
    assert answer(iteration, 1).score == -1
    assert client.post(queue_url(iteration), {"undo": decision.pk}, **HTMX).status_code == 409


def test_a_reviewer_cannot_undo_someone_elses_decision(client, alice, bob, iteration):
    review = record_review(claim(iteration, 0, 1), bob, Decision.HALLUCINATED)
    client.force_login(alice)
    assert client.post(queue_url(iteration), {"undo": review.pk}, **HTMX).status_code == 404
    assert client.post(pair_url(iteration), {"undo": review.pk}, **HTMX).status_code == 404
    assert client.get(f"{queue_url(iteration)}?last={review.pk}").context["queue"].outcome is None
    assert Review.objects.count() == 1


@pytest.mark.parametrize("instructions", [1, 10])
def test_the_queue_after_a_decision_costs_a_fixed_number_of_queries(
    client, alice, django_assert_max_num_queries, instructions
):
    iteration = reviewing_iteration(*[[[0.9, 0.6], [0.7, 0.2]]] * instructions)
    decided = Claim.objects.filter(response__iteration=iteration, response__seed=0, index=1).first()
    review = record_review(decided, alice, Decision.HALLUCINATED)
    client.force_login(alice)
    # The queue page's queries, and four for what the decision did (review, its claim's reviews, the labeler's
    # verdict, the answer's pairs).
    with django_assert_max_num_queries(16 + SESSION_RENEWAL):
        response = client.get(f"{queue_url(iteration)}?last={review.pk}")
    assert response.context["queue"].outcome.review_id == review.pk


# --- the pair page ------------------------------------------------------------------------------------------


def test_the_pair_page_undoes_the_reviewers_last_decision_there(client, alice, bob, iteration):
    client.force_login(alice)
    decided = claim(iteration, 1, 1)
    client.post(pair_url(iteration), {"correct": decided.pk}, **HTMX)
    review = Review.objects.get()
    page = client.get(pair_url(iteration)).content.decode()
    assert f'name="undo" value="{review.pk}" data-key="z"' in page and 'data-state="tie"' in page
    client.force_login(bob)
    assert 'name="undo"' not in client.get(pair_url(iteration)).content.decode()  # not bob's

    client.force_login(alice)
    response = client.post(pair_url(iteration), {"undo": review.pk}, **HTMX)
    html = response.content.decode()
    assert f'id="claim-{decided.pk}"' in html and 'data-verdict="rejected"' in html and "(undone)" in html
    assert 'data-state="paired"' in html and 'name="undo"' not in html  # nothing of alice's left to undo
    assert answer(iteration, 1).score == -1
    assert client.post(pair_url(iteration), {"undo": review.pk}).status_code == 409


def test_the_pair_page_offers_the_reviewers_latest_decision_still_in_force(client, alice, bob, iteration):
    """The page reads it from the claims' histories it shows; the HTMX answers query it: both agree."""
    client.force_login(alice)
    first, second, third = claim(iteration, 1, 1), claim(iteration, 0, 0), claim(iteration, 0, 1)
    for decision, decided in (("correct", first), ("hallucinated", second), ("unsure", third)):
        client.post(pair_url(iteration), {decision: decided.pk}, **HTMX)
    mine = {r.claim_id: r for r in Review.objects.filter(reviewer=alice)}
    client.post(pair_url(iteration), {"undo": mine[third.pk].pk}, **HTMX)  # the latest, undone
    client.force_login(bob)
    client.post(pair_url(iteration), {"correct": first.pk}, **HTMX)  # later, but bob's

    client.force_login(alice)
    page = client.get(pair_url(iteration)).content.decode()
    assert f'data-last-decision="{mine[second.pk].pk}"' in page
    answers = [answer(iteration, 0), answer(iteration, 1)]
    queried = selectors.last_decision(Review.objects.filter(claim__response__in=answers), alice)
    assert queried.review_id == mine[second.pk].pk
    client.force_login(bob)
    bobs = Review.objects.get(reviewer=bob)
    assert f'data-last-decision="{bobs.pk}"' in client.get(pair_url(iteration)).content.decode()


def test_an_order_flip_says_so_and_links_to_the_pair_as_it_now_stands(client, alice):
    # Answer 0 (ten words) is chosen over answer 1 (five): r = 0 keeps it; flipped, length balancing drops it.
    iteration = reviewing_iteration([[0.9, 0.8], [0.9, 0.45]], texts={0: "word " * 10, 1: "word " * 5})
    client.force_login(alice)
    client.post(pair_url(iteration), {"hallucinated": claim(iteration, 0, 1).pk}, **HTMX)
    response = client.post(pair_url(iteration), {"correct": claim(iteration, 1, 1).pk}, **HTMX)
    html = response.content.decode()
    now = pair_url(iteration, left=1, right=0)
    assert 'data-state="flipped"' in html and f'href="{now}" data-now' in html
    assert 'data-state="unpaired"' not in html and "not one of" not in html.lower()
    assert not PreferencePair.objects.filter(iteration=iteration).exists()
    assert "Was rejected, now chosen" in html
    # With the pair stored the other way round, the flip links to it too.
    stored = reviewing_iteration([[0.9, 0.8], [0.9, 0.45]])
    client.post(pair_url(stored), {"hallucinated": claim(stored, 0, 1).pk})
    client.post(pair_url(stored), {"correct": claim(stored, 1, 1).pk})
    page = client.get(pair_url(stored)).content.decode()
    row = PreferencePair.objects.get(iteration=stored)
    assert row.chosen == answer(stored, 1) and f"pair #{row.pk}" in page
    assert f'href="{pair_url(stored, left=1, right=0)}" data-now' in page


def test_both_pages_say_which_keys_decide_undo_and_move_on(client, alice, iteration):
    client.force_login(alice)
    for url in (pair_url(iteration), queue_url(iteration)):
        html = client.get(url).content.decode()
        assert "moves on to the next claim" in html and "<kbd>z</kbd> undo" in html and "<kbd>j</kbd>" in html
