"""The admin in a real Chromium: an admin launches an iteration that a real worker runs to its review gate, and
reviews go through the review pages only (tests/browser.py)."""

from django.core.management import call_command
from django.urls import reverse

from tests.browser import BROWSER_MARKS, log_in, store_images
from tests.review_data import reviewing_iteration
from tests.test_pipeline import wait_for
from webapp.models import Claim, Decision, Iteration, IterationStatus, Response, Review

pytestmark = BROWSER_MARKS


def test_an_admin_creates_and_launches_an_iteration_that_reaches_its_review_gate(page, bob, processes):
    call_command("load_samples")
    processes.worker()
    log_in(page, "bob")
    page.goto(reverse("admin:webapp_iteration_add"))
    assert page.input_value("#id_policy") == "tiny-llava"  # no iteration has trained a checkpoint yet
    page.select_option("#id_source", "demo")
    page.select_option("#id_split", "train")
    for field, value in [("n", "4"), ("max_new_tokens", "16"), ("chunk_size", "4"), ("temperature", "1.0")]:
        page.fill(f"#id_{field}", value)
    page.click("input[name=_continue]")  # save and continue editing: the new draft's change page

    iteration = Iteration.objects.get()
    page.wait_for_url(f"**{reverse('admin:webapp_iteration_change', args=[iteration.pk])}")
    assert iteration.status == IterationStatus.DRAFT and iteration.created_by == bob
    assert iteration.instructions.count() == 16  # the demo source's train split
    page.click("button[data-action='launch']")
    page.wait_for_selector(".messagelist .success")
    assert page.inner_text(".messagelist") == "Iteration 1: launch done."
    assert page.locator("button[data-action='cancel']").is_visible()  # the page now offers what a run allows

    wait_for(iteration, IterationStatus.REVIEWING, IterationStatus.FAILED, processes=processes)
    assert iteration.status == IterationStatus.REVIEWING, iteration.error
    page.reload()
    assert page.inner_text("button[data-action='approve']").lower() == "approve review gate and train"
    assert page.locator("button[data-action='launch']").count() == 0


def test_a_review_is_made_on_the_pair_page_never_in_the_admin(page, bob):
    iteration = reviewing_iteration([[0.9, 0.9, 0.8], [0.9, 0.2, 0.3]])  # scores 0 and −1
    store_images(iteration)
    chosen, rejected = Response.objects.filter(iteration=iteration).order_by("seed")
    first = Claim.objects.get(response=chosen, index=0)
    log_in(page, "bob")

    page.goto(reverse("admin:webapp_review_changelist"))
    assert page.get_by_text("Add review").count() == 0  # no button over the list
    assert page.locator(f"a[href='{reverse('admin:webapp_review_add')}']").count() == 0  # nor in the sidebar
    assert page.goto(reverse("admin:webapp_review_add")).status == 403
    assert not Review.objects.exists()

    pair = reverse("review-pair", args=[iteration.number, chosen.pk, rejected.pk])
    page.goto(pair)
    assert page.inner_text(f"[data-response='{chosen.pk}'] .score") == "score 0"
    page.keyboard.press("n")
    page.wait_for_selector(f"#claim-{first.pk}[data-verdict='rejected']")
    review = Review.objects.get()
    assert (review.claim, review.reviewer, review.decision) == (first, bob, Decision.HALLUCINATED)

    page.goto(reverse("admin:webapp_review_change", args=[review.pk]))  # shown, read-only
    assert page.locator("input[name='_save']").count() == 0
    assert page.locator("a.deletelink").count() == 0
    page.goto(pair)
    assert page.inner_text(f"[data-response='{chosen.pk}'] .score") == "score -1"
    chosen.refresh_from_db()
    assert chosen.score == -1
