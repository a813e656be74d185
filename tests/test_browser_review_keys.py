"""The review keys in a real Chromium against a live server (tests/browser.py): the spot-check queue's keys
decide and move on, undo restores the previous verdict, score and pair (its number too), and a flipped pair
says so."""

from django.urls import reverse

from tests.browser import BROWSER_MARKS, log_in, store_images
from tests.review_data import reviewing_iteration
from webapp.models import Claim, Response, Review

pytestmark = BROWSER_MARKS


def current(page):
    return int(page.get_attribute("[data-claim].current", "data-claim"))


def chip_ids(page):
    return [int(c) for c in page.eval_on_selector_all("[data-claim]", "chips => chips.map(c => c.dataset.claim)")]


def test_the_queue_keys_move_decide_and_undo(page, alice):
    iteration = reviewing_iteration([[0.9, 0.55], [0.45, 0.8]], [[0.6], [0.3]])
    store_images(iteration)
    log_in(page, "alice")
    page.goto(reverse("review-queue", args=[iteration.number]))
    shown = chip_ids(page)
    assert len(shown) > 2 and current(page) == shown[0]
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert current(page) == shown[1]

    decided = Claim.objects.select_related("response").get(pk=shown[1])
    score = decided.response.score
    verdict = "hallucinated" if decided.effective_accepted() else "correct"
    page.keyboard.press("n" if verdict == "hallucinated" else "y")  # overturn the labeler
    page.wait_for_selector(f"[data-claim='{shown[1]}']", state="detached")
    # Moved on to the claim now in its place: the queue takes the decided one out (and may reorder the rest).
    assert current(page) == chip_ids(page)[1] != shown[1]
    change = page.locator(".score-change")
    after = score - 1 if verdict == "hallucinated" else score + 1
    assert (change.get_attribute("data-score-before"), change.get_attribute("data-score-after")) == (
        str(score),
        str(after),
    )
    assert page.get_attribute("[data-done]", "data-done") == "1"
    assert Response.objects.get(pk=decided.response_id).score == after

    page.keyboard.press("z")
    page.wait_for_selector(f"[data-claim='{shown[1]}']")  # back in the queue
    assert page.get_attribute(".score-change", "data-score-after") == str(score)
    assert page.get_attribute("[data-done]", "data-done") == "0"
    assert Response.objects.get(pk=decided.response_id).score == score
    assert list(Review.objects.order_by("pk").values_list("decision", flat=True)) == [verdict, "undo"]
    page.click(f"[data-claim='{shown[1]}'] .history summary")
    assert "(undone)" in page.inner_text(f"[data-claim='{shown[1]}'] .history")

    page.click(f"[data-queue-claim='{shown[0]}'] [data-pair-link]")
    page.wait_for_selector("#pair")
    assert page.locator(f"#claim-{shown[0]}").count() == 1  # the claim is on its pair page


def test_the_pair_page_undoes_by_key_and_says_when_the_order_flipped(page, alice):
    iteration = reviewing_iteration([[0.9, 0.8], [0.9, 0.45]])  # answer 0 (score 0) over answer 1 (−1)
    store_images(iteration)
    chosen, rejected = Response.objects.filter(iteration=iteration).order_by("seed")
    log_in(page, "alice")
    page.goto(reverse("review-pair", args=[iteration.number, chosen.pk, rejected.pk]))
    number = page.inner_text("[data-state='paired']")
    assert number.startswith("Pair #")
    first = Claim.objects.get(response=chosen, index=1)
    page.click(f"#claim-{first.pk} .claim-text")
    page.keyboard.press("n")  # a tie
    page.wait_for_selector("[data-state='tie']")
    assert page.get_attribute(f"#claim-{first.pk}", "data-verdict") == "rejected"
    assert "current" in page.get_attribute(f"#claim-{Claim.objects.get(response=rejected, index=0).pk}", "class")

    page.keyboard.press("z")  # undo: the labeler's verdict, the score and the pair are back
    page.wait_for_selector("[data-state='paired']")
    assert page.get_attribute(f"#claim-{first.pk}", "data-verdict") == "accepted"
    assert page.inner_text(f"[data-response='{chosen.pk}'] .score") == "score 0"
    assert page.inner_text("[data-state='paired']") == number  # the same pair, by its number
    assert list(Review.objects.order_by("pk").values_list("decision", flat=True)) == ["hallucinated", "undo"]

    page.click(f"#claim-{first.pk} .claim-text")
    page.keyboard.press("n")  # the tie again, then the rejected answer's rejected claim is correct: a flip
    page.wait_for_selector("[data-state='tie']")
    page.click(f"#claim-{Claim.objects.get(response=rejected, index=1).pk} button[data-key='y']")
    page.wait_for_selector("[data-state='flipped']")
    assert "Order flipped" in page.inner_text("#pair-status")
    page.click("[data-now]")
    page.wait_for_url(f"**{reverse('review-pair', args=[iteration.number, rejected.pk, chosen.pk])}")
    assert page.get_attribute("[data-state]", "data-state") == "paired"
