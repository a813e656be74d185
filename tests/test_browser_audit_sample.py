"""The audit mode and the applied margin in a real Chromium against a live server (tests/browser.py): staff draw a
random sample, the audit page serves its claims in the drawn order and the estimate follows each decision; a
margin applied on the calibration page changes the pairs the pair list shows."""

from django.urls import reverse

from tests.browser import BROWSER_MARKS, log_in, store_images
from tests.review_data import reviewing_iteration
from webapp.models import AuditItem, PreferencePair, Review
from webapp.review.audit_sample import audit_result, latest_sample

pytestmark = BROWSER_MARKS

# p_yes per claim of each answer (p_no = 1 − p_yes). Under m = 0 instruction 1's answers tie (both score 0);
# m = 0.2 rejects its 0.58 claim (p_yes − p_no = 0.16), so a pair appears there, and one of instruction 0's goes.
ANSWERS = ([[0.9, 0.55], [0.9, 0.9], [0.3]], [[0.58], [0.95]])


def shown_claims(page):
    return [
        int(c) for c in page.eval_on_selector_all("[data-audit-claim]", "els => els.map(e => e.dataset.auditClaim)")
    ]


def test_the_audit_mode_serves_random_claims_and_the_estimate_follows_the_decisions(page, alice, bob):
    iteration = reviewing_iteration(*ANSWERS)
    store_images(iteration)
    log_in(page, "bob")
    page.goto(reverse("review-audit", args=[iteration.number]))
    assert "No audit sample" in page.inner_text("#audit")
    page.select_option("#id_design", "uniform")
    page.fill("#id_size", "5")
    page.click(".audit-start button")
    page.wait_for_selector("[data-audit-claim]")
    sample = latest_sample(iteration)
    drawn = list(AuditItem.objects.filter(sample=sample).order_by("position").values_list("claim", flat=True))
    assert len(drawn) == 5 and shown_claims(page) == drawn
    assert page.get_attribute(".estimate", "data-reviewed") == "0"

    page.keyboard.press("y")
    page.wait_for_selector(".estimate[data-reviewed='1']")
    assert shown_claims(page) == drawn[1:]
    page.keyboard.press("n")
    page.wait_for_selector(".estimate[data-reviewed='2']")
    estimate = audit_result(sample).estimate
    assert page.get_attribute("[data-rate]", "data-rate") == f"{estimate.rate:.4f}"
    assert page.get_attribute("[data-halve]", "data-halve") == "5"  # min(3 × 2, 7 claims − 2)
    assert "draw a larger sample: this one has 3 left" in page.inner_text(".estimate")
    assert list(Review.objects.filter(audit=sample).values_list("claim", flat=True).order_by("pk")) == drawn[:2]

    # The spot-check queue's reviews stay out of the audit.
    page.goto(reverse("review-queue", args=[iteration.number]))
    page.keyboard.press("y")
    page.wait_for_selector(".outcome")
    page.goto(reverse("review-audit", args=[iteration.number]))
    assert page.get_attribute(".estimate", "data-reviewed") == "2"

    page.goto("/")
    assert f"n={estimate.reviewed}" in page.inner_text(f"tr[data-iteration='{iteration.number}'] [data-audit]")


def test_an_applied_margin_changes_the_pairs_shown(page, bob):
    iteration = reviewing_iteration(*ANSWERS)
    store_images(iteration)
    log_in(page, "bob")
    pairs_url = f"{reverse('review-pairs')}?iteration={iteration.number}"
    page.goto(pairs_url)
    before = set(page.eval_on_selector_all("tr[data-pair]", "rows => rows.map(r => r.dataset.pair)"))
    assert len(before) == 2

    page.goto(reverse("iteration-calibration", args=[iteration.number]) + "?margin=0.2")
    assert page.get_attribute("[data-appeared]", "data-appeared") == "2"
    assert page.get_attribute("[data-disappeared]", "data-disappeared") == "1"
    page.click(".apply-margin button")
    page.wait_for_selector("tr[data-margin='0.2']")
    assert "2 appeared, 1 disappeared" in page.inner_text(".message")
    assert page.get_attribute("[data-current-margin]", "data-current-margin") == "0.2"

    page.goto(pairs_url)
    after = set(page.eval_on_selector_all("tr[data-pair]", "rows => rows.map(r => r.dataset.pair)"))
    assert len(after) == 3 and len(before & after) == 1
    assert after == {str(pk) for pk in PreferencePair.objects.filter(iteration=iteration).values_list("pk", flat=True)}
