"""The pair list, the pair page and the spot-check queue: who may see them, what they show, what a decision does."""

import re

import pytest
from django.urls import reverse

from tests.factories import IterationFactory, PreferencePairFactory, ReviewFactory
from tests.review_data import SESSION_RENEWAL, reviewing_iteration
from webapp.models import Claim, Decision, IterationStatus, PreferencePair, Response, Review
from webapp.review import selectors

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def answer(iteration, seed):
    return Response.objects.filter(iteration=iteration, seed=seed).order_by("pk").first()


def claim(iteration, seed, index=0):
    return Claim.objects.filter(response__iteration=iteration, response__seed=seed, index=index).order_by("pk").first()


def pair_url(iteration, left=0, right=1):
    return reverse("review-pair", args=[iteration.number, answer(iteration, left).pk, answer(iteration, right).pk])


def queue_url(iteration):
    return reverse("review-queue", args=[iteration.number])


def press(decision, c):
    """The form data of pressing a claim's decision button (a named submit button, the claim as its value)."""
    return {decision: c.pk}


@pytest.fixture
def iteration():
    """Answer 0 (score 0) is chosen over answer 1 (score −1)."""
    return reviewing_iteration([[0.9, 0.8], [0.9, 0.45]])


def urls(iteration):
    """Every page, and the POST each takes."""
    return [
        (reverse("review-pairs"), None),
        (pair_url(iteration), press("hallucinated", claim(iteration, 0))),
        (pair_url(iteration), {"exclude": "1"}),
        (queue_url(iteration), press("hallucinated", claim(iteration, 0))),
    ]


# --- protection ---------------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_log_in(client, iteration):
    for url, form in urls(iteration):
        for response in [client.get(url), client.post(url, form or {})]:
            assert response.status_code == 302, url
            assert response["Location"].startswith(reverse("login"))
    assert not Review.objects.exists()


def test_users_outside_the_reviewer_group_are_refused(client, charlie, iteration):
    client.force_login(charlie)
    for url, form in urls(iteration):
        assert client.get(url).status_code == 403, url
        assert client.post(url, form or {}).status_code == 403, url
    assert not Review.objects.exists()
    assert not PreferencePair.objects.filter(excluded=True).exists()


def test_reviewers_and_staff_may_review(client, alice, bob, iteration):
    for user in (alice, bob):
        client.force_login(user)
        for url, _ in urls(iteration):
            assert client.get(url).status_code == 200, url
    client.force_login(bob)
    assert client.post(pair_url(iteration), press("correct", claim(iteration, 0))).status_code == 302
    assert Review.objects.get().reviewer == bob


def test_ids_from_another_iteration_or_instruction_are_not_found(client, alice, iteration):
    other = reviewing_iteration([[0.9], [0.2]], [[0.9], [0.3]])
    a, b = answer(iteration, 0).pk, answer(iteration, 1).pk
    other_answers = list(Response.objects.filter(iteration=other).order_by("instruction", "seed"))
    client.force_login(alice)
    not_found = [
        ("get", reverse("review-pair", args=[other.number, a, b])),  # answers of another iteration
        ("get", reverse("review-pair", args=[999, a, b])),
        ("get", reverse("review-pair", args=[iteration.number, a, a])),
        ("get", reverse("review-pair", args=[other.number, other_answers[0].pk, other_answers[2].pk])),  # 2 questions
        ("get", reverse("review-queue", args=[999])),
        ("get", reverse("review-pairs") + "?iteration=999"),
        ("post", reverse("review-pair", args=[iteration.number, a, b]), press("hallucinated", claim(other, 0))),
        ("post", reverse("review-pair", args=[other.number, a, b]), press("hallucinated", claim(iteration, 0))),
        ("post", reverse("review-pair", args=[other.number, a, b]), {"exclude": "1"}),
        ("post", queue_url(iteration), press("hallucinated", claim(other, 0))),
    ]
    for method, url, *form in not_found:
        response = client.post(url, *form) if method == "post" else client.get(url)
        assert response.status_code == 404, url
    assert not Review.objects.exists()


# --- the pair list ------------------------------------------------------------------------------------------


def test_the_list_shows_the_pairs_of_the_iteration_under_review(client, alice, iteration):
    IterationFactory(status=IterationStatus.DONE)
    pair = PreferencePair.objects.get(iteration=iteration)
    pair.instruction.question = "Is <script>alert(1)</script> here?"
    pair.instruction.save()
    client.force_login(alice)
    response = client.get(reverse("review-pairs"))
    assert response.context["iteration"] == iteration
    assert pair_url(iteration).encode() in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content
    assert b"<script>alert(1)" not in response.content


def test_the_list_filters_pairs(client, alice):
    iteration = reviewing_iteration([[0.9], [0.2]], [[0.9, 0.9], [0.2, 0.2]], [[0.9], [0.3]])
    gap_two = PreferencePair.objects.get(iteration=iteration, score_gap=2)
    excluded = PreferencePair.objects.filter(iteration=iteration, score_gap=1).first()
    excluded.excluded = True
    excluded.save()
    ReviewFactory(claim=Claim.objects.filter(response=gap_two.rejected).first(), reviewer=alice)
    client.force_login(alice)

    def listed(**params):
        response = client.get(reverse("review-pairs"), {"iteration": iteration.number, **params})
        return {p.pk for p in response.context["page"].pairs}

    everything = set(PreferencePair.objects.filter(iteration=iteration).values_list("pk", flat=True))
    assert listed() == everything
    assert listed(min_gap=2) == {gap_two.pk}
    assert listed(max_gap=1) == everything - {gap_two.pk}
    assert listed(reviewed="yes") == {gap_two.pk}
    assert listed(reviewed="no") == everything - {gap_two.pk}
    assert listed(excluded="yes") == {excluded.pk}
    assert listed(excluded="no") == everything - {excluded.pk}
    assert listed(source="test") == everything
    assert listed(source="elsewhere") == set()


def test_the_filter_form_shows_the_filters_applied(client, alice):
    iteration = reviewing_iteration([[0.9], [0.2]])
    client.force_login(alice)
    applied = {"reviewed": "no", "excluded": "yes", "min_gap": "2", "max_gap": "3", "source": "test", "q": "red cat"}
    html = client.get(reverse("review-pairs"), {"iteration": iteration.number, "sort": "gap", **applied}).content
    html = html.decode()
    for name, value in [("reviewed", "no"), ("excluded", "yes"), ("source", "test"), ("sort", "gap")]:
        select = html[html.index(f'<select name="{name}">') :]
        select = select[: select.index("</select>")]
        assert select.count(" selected") == 1 and f'<option value="{value}" selected>' in select, name
    assert '<input type="number" name="min_gap" min="1" value="2">' in html
    assert '<input type="number" name="max_gap" min="1" value="3">' in html
    assert '<input type="text" name="q" maxlength="200" value="red cat">' in html
    fresh = client.get(reverse("review-pairs")).content.decode()
    assert '<option value="" selected>any</option>' in fresh and 'name="q" maxlength="200" value=""' in fresh


def test_the_list_pages_by_keyset(client, alice, monkeypatch):
    monkeypatch.setattr(selectors, "PAGE_SIZE", 2)
    iteration = reviewing_iteration(*[[[0.9] * 3, [0.2] * 3]] * 2, *[[[0.9], [0.2]]] * 3)  # gaps 3, 3, 1, 1, 1
    client.force_login(alice)
    for sort, key in [
        ("-gap", lambda p: (-p.score_gap, -p.pk)),
        ("gap", lambda p: (p.score_gap, p.pk)),
        ("-id", lambda p: -p.pk),
        ("id", lambda p: p.pk),
    ]:
        seen, params = [], {"iteration": iteration.number, "sort": sort}
        while True:
            response = client.get(reverse("review-pairs"), params)
            seen += [p.pk for p in response.context["page"].pairs]
            if not response.context["page"].next_cursor:
                break
            params["after"] = response.context["page"].next_cursor
        assert seen == [p.pk for p in sorted(PreferencePair.objects.filter(iteration=iteration), key=key)]
    response = client.get(reverse("review-pairs"), {"iteration": iteration.number}, **HTMX)
    assert b"<html" not in response.content and b'id="results"' in response.content
    assert b'rel="next"' in response.content


@pytest.mark.parametrize("instructions", [1, 12])
def test_the_list_costs_a_fixed_number_of_queries(client, alice, django_assert_max_num_queries, instructions):
    iteration = reviewing_iteration(*[[[0.9, 0.9], [0.9, 0.2], [0.2, 0.2]]] * instructions)
    ReviewFactory(claim=claim(iteration, 0), reviewer=alice)
    client.force_login(alice)
    with django_assert_max_num_queries(10 + SESSION_RENEWAL):
        response = client.get(reverse("review-pairs"), {"reviewed": "no", "min_gap": 1, "source": "test"})
    assert response.context["page"].matching == 3 * instructions - 2  # answer 0 of one instruction is reviewed
    assert len(response.context["page"].pairs) == min(selectors.PAGE_SIZE, 3 * instructions - 2)


# --- the pair page ------------------------------------------------------------------------------------------


def test_the_pair_page_shows_both_answers_and_each_claims_verdict(client, alice, iteration):
    a = answer(iteration, 1)
    a.text = "It is <b>bold</b> & <img src=x onerror=alert(1)>"
    a.save()
    Claim.objects.filter(pk=claim(iteration, 1, 1).pk).update(text="<script>bad()</script>")
    client.force_login(alice)
    response = client.get(pair_url(iteration))
    html = response.content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img src=x" not in html
    assert "&lt;script&gt;bad()&lt;/script&gt;" in html and "<script>bad()" not in html
    assert html.count('data-verdict="accepted"') == 3 and html.count('data-verdict="rejected"') == 1
    assert "p_yes 0.45" in html and "labeler" in html
    assert 'data-state="paired"' in html and "score −1" not in html and "score -1" in html
    assert iteration.instructions.first().image.url in html


@pytest.mark.parametrize("claims", [1, 15])
def test_the_pair_page_costs_a_fixed_number_of_queries(client, alice, django_assert_max_num_queries, claims):
    iteration = reviewing_iteration([[0.9] * claims, [0.2] * claims])
    for index in range(claims):
        ReviewFactory(claim=claim(iteration, 1, index), reviewer=alice, decision=Decision.HALLUCINATED)
    client.force_login(alice)
    url = pair_url(iteration)
    with django_assert_max_num_queries(10 + SESSION_RENEWAL):
        response = client.get(url)
    assert response.content.count(b'data-verdict="rejected"') == claims
    assert b"reviewer alice" in response.content


def swapped_parts(html: str) -> dict[str, str]:
    """The parts of an HTMX answer swapped out of band, by id: each must carry hx-swap-oob."""
    parts = re.findall(r'<(\w+) (?:hx-swap-oob="true" )?[^>]*?id="([^"]+)"', html)
    assert html.count('hx-swap-oob="true"') == len(parts)
    return {part_id: tag for tag, part_id in parts}


def test_a_decision_updates_the_chips_the_scores_and_the_pair_in_place(client, alice, iteration):
    client.force_login(alice)
    decided = claim(iteration, 0, 1)
    left, right = answer(iteration, 0), answer(iteration, 1)
    response = client.post(pair_url(iteration), press("hallucinated", decided), **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and "<section" not in html
    # What a decision can change, and nothing else: the claim's chip, both headings, the pair's status.
    assert swapped_parts(html) == {
        "pair-status": "div",
        f"heading-{left.pk}": "h2",
        f"heading-{right.pk}": "h2",
        f"claim-{decided.pk}": "li",
    }
    assert 'data-state="tie"' in html
    assert html.count('data-verdict="rejected"') == 1 and "reviewer alice" in html and "1 review<" in html
    assert f'id="heading-{left.pk}" hx-swap-oob="true">Listed as chosen <span class="score" data-score="-1">' in html
    assert answer(iteration, 0).score == -1
    assert not PreferencePair.objects.filter(iteration=iteration).exists()
    # The page still loads (and says so) after the pair is gone.
    page = client.get(pair_url(iteration)).content.decode()
    assert 'data-state="tie"' in page and page.count('data-verdict="rejected"') == 2 and "hx-swap-oob" not in page

    response = client.post(pair_url(iteration), press("correct", claim(iteration, 1, 1)), **HTMX)
    html = response.content.decode()
    assert 'data-state="flipped"' in html and "Was chosen, now rejected" in html and "Was rejected, now chosen" in html
    assert PreferencePair.objects.get(iteration=iteration).chosen == answer(iteration, 1)


@pytest.mark.parametrize("claims", [2, 20])
def test_a_decision_costs_a_fixed_number_of_queries(client, alice, django_assert_max_num_queries, claims):
    iteration = reviewing_iteration([[0.9] * claims, [0.2] * claims])
    client.force_login(alice)
    url, decision = pair_url(iteration), press("hallucinated", claim(iteration, 0, 0))
    # Session, user, group, iteration, answers, claim; savepoint, locks (iteration and instruction, one query),
    # review, rebuild (answers, claims, reviews, score, pairs, pair update), the dashboard's counts (lock,
    # update), release; answers, claim, reviews, pairs.
    with django_assert_max_num_queries(22 + SESSION_RENEWAL):
        response = client.post(url, decision, **HTMX)
    assert response.status_code == 200 and "claim-" in response.content.decode()


def test_without_htmx_a_decision_redirects_back_to_the_pair(client, alice, iteration):
    client.force_login(alice)
    response = client.post(pair_url(iteration), press("correct", claim(iteration, 1, 1)))
    assert response.status_code == 302 and response["Location"] == pair_url(iteration)
    assert claim(iteration, 1, 1).reviews.get().decision == "correct"


def test_unsure_records_a_review_and_changes_nothing(client, alice, iteration):
    client.force_login(alice)
    response = client.post(pair_url(iteration), press("unsure", claim(iteration, 1, 1)), **HTMX)
    assert b"1 review" in response.content and b'data-state="paired"' in response.content
    assert answer(iteration, 1).score == -1


def test_a_bad_decision_or_a_closed_gate_is_refused(client, alice, iteration):
    client.force_login(alice)
    assert client.post(pair_url(iteration), {"maybe": claim(iteration, 0).pk}, **HTMX).status_code == 400
    iteration.status = IterationStatus.TRAINING
    iteration.save()
    assert client.post(pair_url(iteration), press("hallucinated", claim(iteration, 0)), **HTMX).status_code == 409
    assert client.post(pair_url(iteration), {"exclude": "1"}, **HTMX).status_code == 409
    assert not Review.objects.exists()
    assert b'name="hallucinated"' not in client.get(pair_url(iteration)).content


def test_a_reviewer_excludes_and_includes_a_pair(client, alice, iteration):
    client.force_login(alice)
    response = client.post(pair_url(iteration), {"exclude": "1"}, **HTMX)
    assert b'data-excluded="yes"' in response.content and b"by alice" in response.content
    assert PreferencePair.objects.get(iteration=iteration).excluded
    # The same pair seen the other way round is the same pair.
    assert client.post(pair_url(iteration, left=1, right=0), {"exclude": "0"}).status_code == 302
    assert not PreferencePair.objects.get(iteration=iteration).excluded


def test_an_imported_pair_shows_its_answers_without_claims(client, alice):
    iteration = IterationFactory(labeler="imported", status=IterationStatus.REVIEWING)
    pair = PreferencePairFactory(iteration=iteration)
    client.force_login(alice)
    response = client.get(reverse("review-pair", args=[iteration.number, pair.chosen_id, pair.rejected_id]))
    assert b"an imported answer" in response.content and b"Exclude the pair" in response.content


# --- the spot-check queue -----------------------------------------------------------------------------------


def test_the_queue_shows_the_most_uncertain_claim_and_counts_what_is_done(client, alice, bob, iteration):
    client.force_login(alice)
    response = client.get(reverse("review-queue", args=[iteration.number]))
    first = claim(iteration, 1, 1)  # p_yes 0.45: the most uncertain
    assert response.context["queue"].item.claim.pk == first.pk
    assert iteration.instructions.first().image.url.encode() in response.content
    response = client.post(queue_url(iteration), press("correct", first), **HTMX)
    assert response.status_code == 200 and b"<html" not in response.content
    assert f'data-queue-claim="{claim(iteration, 0, 1).pk}"'.encode() in response.content  # p_yes 0.8
    assert b'data-done="1"' in response.content
    assert answer(iteration, 1).score == 0
    client.force_login(bob)
    response = client.post(queue_url(iteration), press("unsure", claim(iteration, 0, 1)))
    review = Review.objects.latest("pk")
    assert response.status_code == 302 and response["Location"] == f"{queue_url(iteration)}?last={review.pk}"
    assert client.get(response["Location"]).context["queue"].outcome.review_id == review.pk
    assert client.get(queue_url(iteration)).context["queue"].done == 1  # bob's own


def test_an_empty_queue_says_so(client, alice):
    iteration = reviewing_iteration([[0.9]])
    ReviewFactory(claim=claim(iteration, 0), reviewer=alice)
    client.force_login(alice)
    assert b"Nothing left to spot-check" in client.get(reverse("review-queue", args=[iteration.number])).content


@pytest.mark.parametrize("instructions", [1, 10])
def test_the_queue_costs_a_fixed_number_of_queries(client, alice, django_assert_max_num_queries, instructions):
    iteration = reviewing_iteration(*[[[0.9, 0.6], [0.7, 0.2]]] * instructions)
    ReviewFactory(claim=claim(iteration, 0), reviewer=alice)
    client.force_login(alice)
    with django_assert_max_num_queries(10 + SESSION_RENEWAL):
        response = client.get(reverse("review-queue", args=[iteration.number]))
    assert response.context["queue"].item is not None
