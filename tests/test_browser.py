"""The review UI in a real Chromium against a live server (tests/browser.py)."""

from django.urls import reverse

from tests.browser import BROWSER_MARKS, log_in, store_images
from tests.factories import IterationFactory, JobFactory
from tests.review_data import reviewing_iteration
from webapp.models import Claim, Iteration, IterationStatus, Job, JobKind, JobState, PreferencePair, Response, Review

pytestmark = BROWSER_MARKS


def test_a_reviewer_marks_a_claim_hallucinated_by_keyboard(page, alice):
    iteration = reviewing_iteration([[0.9, 0.9, 0.8], [0.9, 0.2, 0.3]])  # gap 2: still a pair after one override
    store_images(iteration)
    chosen, rejected = Response.objects.filter(iteration=iteration).order_by("seed")
    first = Claim.objects.get(response=chosen, index=0)
    log_in(page, "alice")
    page.goto(reverse("review-pair", args=[iteration.number, chosen.pk, rejected.pk]))
    page.evaluate("window.notReloaded = true")
    other = f"#claim-{Claim.objects.get(response=rejected, index=0).pk}"
    page.eval_on_selector(other, "chip => { chip.untouched = true; }")
    chip = f"#claim-{first.pk}"
    assert page.get_attribute(chip, "data-verdict") == "accepted"
    assert "current" in page.get_attribute(chip, "class")
    assert page.inner_text(f"[data-response='{chosen.pk}'] .score") == "score 0"

    page.keyboard.press("n")
    page.wait_for_selector(f"{chip}[data-verdict='rejected']")
    assert page.inner_text(f"[data-response='{chosen.pk}'] .score") == "score -1"
    assert "reviewer alice" in page.inner_text(chip)
    assert page.evaluate("window.notReloaded") is True
    assert page.eval_on_selector(other, "chip => chip.untouched") is True  # only what changed was swapped
    assert "current" in page.get_attribute(f"#claim-{Claim.objects.get(response=chosen, index=1).pk}", "class")

    page.reload()
    assert page.get_attribute(chip, "data-verdict") == "rejected"
    assert page.inner_text(f"[data-response='{chosen.pk}'] .score") == "score -1"
    assert page.get_attribute("[data-state]", "data-state") == "paired"
    assert Review.objects.get().claim == first

    page.keyboard.press("x")  # the pair's status is swapped in place, excluded; x again includes it
    page.wait_for_selector("[data-excluded='yes']")
    assert PreferencePair.objects.get(iteration=iteration, chosen=chosen).excluded is True
    page.keyboard.press("x")
    page.wait_for_selector("[data-excluded='no']")
    assert PreferencePair.objects.get(iteration=iteration, chosen=chosen).excluded is False


def test_a_reviewer_works_through_the_spot_check_queue_by_keyboard(page, alice):
    iteration = reviewing_iteration([[0.9, 0.55], [0.45, 0.8]], [[0.6], [0.3]])
    store_images(iteration)
    log_in(page, "alice")
    page.goto(reverse("review-queue", args=[iteration.number]))
    seen = []
    for key in "ynu":
        claim_id = page.get_attribute("[data-queue-claim]", "data-queue-claim")
        seen.append(int(claim_id))
        page.keyboard.press(key)
        page.wait_for_selector(f"[data-queue-claim='{claim_id}']", state="detached")
    assert page.get_attribute("[data-done]", "data-done") == "3"
    reviews = list(Review.objects.order_by("pk").values_list("claim", "decision"))
    assert reviews == list(zip(seen, ["correct", "hallucinated", "unsure"], strict=True))


def test_the_queue_goes_round_the_pictures_decision_after_decision(page, alice):
    """Three answers of one picture say the same thing, equally uncertain: after deciding one, the next claim the
    page serves is the other picture's (the same claim of the same picture came five times in a row)."""
    iteration = reviewing_iteration([[0.5], [0.5], [0.5]], [[0.6]], [[0.65]])
    store_images(iteration)
    log_in(page, "alice")
    page.goto(reverse("review-queue", args=[iteration.number]))
    pictures = []
    for _ in range(3):
        claim_id = page.get_attribute("[data-queue-claim]", "data-queue-claim")
        pictures.append(Claim.objects.get(pk=claim_id).response.instruction_id)
        page.keyboard.press("y")
        page.wait_for_selector(f"[data-queue-claim='{claim_id}']", state="detached")
    assert len(set(pictures)) == 3, pictures


def test_a_running_iterations_progress_bar_moves_until_it_ends(page, alice):
    iteration = IterationFactory(status=IterationStatus.LABELING)
    job = JobFactory(iteration=iteration, kind=JobKind.LABEL, done=2, total=10, state=JobState.RUNNING)
    log_in(page, "alice")
    polls = []
    page.on("request", lambda request: polls.append(request.url) if "/iterations/" in request.url else None)
    bar = f"[data-iteration='{iteration.number}'] progress[data-kind='label']"
    assert page.get_attribute(bar, "value") == "20"

    Job.objects.filter(pk=job.pk).update(done=7)
    page.wait_for_selector(f"{bar}[value='70']")

    Job.objects.filter(pk=job.pk).update(done=10, state=JobState.SUCCEEDED)
    Iteration.objects.filter(pk=iteration.pk).update(status=IterationStatus.REVIEWING)
    page.wait_for_selector(f"[data-iteration='{iteration.number}'] [data-status='reviewing']")
    assert page.get_attribute(bar, "value") == "100"
    stopped = len(polls)
    page.wait_for_timeout(2500)
    assert len(polls) == stopped  # the polling ended with the job
