"""The audit trail in a real Chromium: what staff do on the iteration page shows in its trail at once, and the
admin's list of the trail offers nothing to change (tests/browser.py)."""

from django.urls import reverse

from tests.browser import BROWSER_MARKS, log_in
from tests.factories import InstructionFactory, IterationFactory
from webapp.models import AuditEvent

pytestmark = BROWSER_MARKS


def test_a_launch_and_a_cancel_show_in_the_iteration_pages_trail_and_the_admins(page, bob):
    iteration = IterationFactory(number=1)
    iteration.instructions.set(InstructionFactory.create_batch(2))
    log_in(page, "bob")
    page.goto(reverse("iteration", args=[1]))
    page.click("button:has-text('Launch')")
    page.click("button:has-text('Cancel')")
    rows = page.locator("table.trail tr[data-action]")
    assert rows.count() == 2
    assert rows.nth(0).inner_text().split("\t")[1:3] == ["bob", "cancelled"]
    assert rows.nth(1).inner_text().split("\t")[1:3] == ["bob", "launched"]

    page.click("text=The whole trail of Iteration 1")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 2
    assert page.locator("select[name=action], input[name=_save], .deletelink").count() == 0
    events = AuditEvent.objects.filter(iteration=1)
    assert list(events.values_list("actor", "address")) == [("bob", "127.0.0.1")] * 2
