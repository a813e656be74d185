"""First-use details in a real Chromium (tests/browser.py): the pair list on a phone, the Cancel button going
when the iteration stops, the styled 404 page."""

from django.urls import reverse

from tests.browser import BROWSER_MARKS, log_in
from tests.factories import IterationFactory, JobFactory
from tests.review_data import reviewing_iteration
from webapp.models import Iteration, IterationStatus, JobKind, JobState

pytestmark = BROWSER_MARKS


def test_the_pair_list_is_usable_on_a_phone(browser, live_server, alice):
    iteration = reviewing_iteration(*[[[0.9, 0.9], [0.9, 0.2]] for _ in range(4)])
    context = browser.new_context(base_url=live_server.url, viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    try:
        log_in(page, "alice")
        page.goto(reverse("review-pairs"))
        rows = page.locator("table.pairs tr[data-pair]")
        assert rows.count() == 4
        assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing runs off the side
        first = rows.first.bounding_box()
        assert first["x"] >= 0 and first["x"] + first["width"] <= 375
        assert page.locator("table.pairs td[data-label='Question']").first.is_visible()
        # Each row is a card whose cells name their column.
        label = page.eval_on_selector(
            "table.pairs td[data-label='Gap']", "td => getComputedStyle(td, '::before').content"
        )
        assert label == '"Gap: "'
        page.fill("input[name=q]", "unicorn")
        page.select_option("select[name=source]", "test")
        page.click(".filters button")
        page.wait_for_selector("text=No pairs match.")
        page.fill("input[name=q]", "")
        page.click(".filters button")
        page.wait_for_selector("table.pairs tr[data-pair]")
        rows.first.locator("a").click()
        page.wait_for_url(f"**/review/{iteration.number}/pairs/**")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
    finally:
        context.close()


def test_the_cancel_button_disappears_when_the_iteration_stops(page, bob):
    iteration = IterationFactory(status=IterationStatus.LABELING)
    job = JobFactory(iteration=iteration, kind=JobKind.LABEL, done=2, total=10, state=JobState.RUNNING)
    log_in(page, "bob")
    page.goto(reverse("iteration", args=[iteration.number]))
    cancel = "#live button:text('Cancel')"
    assert page.is_visible(cancel)
    type(job).objects.filter(pk=job.pk).update(done=10, state=JobState.SUCCEEDED)
    Iteration.objects.filter(pk=iteration.pk).update(status=IterationStatus.DONE)
    page.wait_for_selector("[data-status='done']")
    assert page.locator(cancel).count() == 0


def test_cancelling_leaves_resume_in_place_of_cancel(page, bob):
    iteration = IterationFactory(status=IterationStatus.LABELING)
    log_in(page, "bob")
    page.goto(reverse("iteration", args=[iteration.number]))
    Iteration.objects.filter(pk=iteration.pk).update(status=IterationStatus.FAILED, error="label chunk 0: boom")
    page.wait_for_selector("[data-status='failed']")
    assert page.locator("#live button:text('Cancel')").count() == 0
    assert page.is_visible("#live button:text('Resume')")
    assert page.inner_text("[data-error-reason]") == "label chunk 0: boom"


def test_a_missing_page_is_the_styled_404(page, bob, settings):
    settings.DEBUG = False
    settings.STORAGES = settings.STORAGES | {
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    }
    IterationFactory(number=1)
    log_in(page, "bob")
    blocked = []
    page.on(
        "console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None
    )
    response = page.goto("/iterations/1/bogus/")
    assert response.status == 404
    assert page.inner_text("h1") == "Not found"
    assert page.eval_on_selector("header", "h => getComputedStyle(h).display") == "flex"  # the site's stylesheet
    assert blocked == []
    assert page.eval_on_selector("link[rel=icon]", "l => l.href").endswith("/static/webapp/favicon.svg")


def test_approving_asks_first_and_dismissing_the_question_sends_nothing(page, bob):
    """Found on first use: "Approve review gate and train" started minutes of training at one click."""
    iteration = reviewing_iteration([[0.9], [0.2]])
    log_in(page, "bob")
    page.goto(reverse("iteration", args=[iteration.number]))
    asked = []

    def answer(dialog, accept):
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, accept=False))
    page.click("#live button:text('Approve review gate and train')")
    page.wait_for_timeout(500)
    assert asked == ["Close the review gate and start training? Reviews can no longer change the pairs."]
    assert Iteration.objects.get(pk=iteration.pk).status == IterationStatus.REVIEWING

    page.once("dialog", lambda dialog: answer(dialog, accept=True))
    page.click("#live button:text('Approve review gate and train')")
    page.wait_for_selector("[data-status='training']")
    assert len(asked) == 2 and Iteration.objects.get(pk=iteration.pk).status == IterationStatus.TRAINING


def test_a_missing_pair_is_the_styled_404_with_debug_on(page, alice, settings):
    """Found on first use: the demo runs with DEBUG on, and a stale link to a pair showed Django's debug page."""
    settings.DEBUG = True
    iteration = reviewing_iteration([[0.9], [0.2]])
    log_in(page, "alice")
    response = page.goto(reverse("review-pair", args=[iteration.number, 999_998, 999_999]))
    assert response.status == 404
    assert page.inner_text("h1") == "Not found"
    page.click("text=Back to the dashboard")
    page.wait_for_url("**/")


def test_a_filter_that_cannot_be_read_is_said_not_dropped(page, alice):
    """Found on first use: min_gap=abc listed every pair, as if no filter had been given."""
    reviewing_iteration([[0.9], [0.2]])
    log_in(page, "alice")
    response = page.goto(reverse("review-pairs") + "?min_gap=abc")
    assert response.status == 400
    notice = page.inner_text("[data-search-notice]")
    assert notice == "Filter not applied. Score gap from: Enter a whole number."
    assert page.locator("table.pairs tr[data-pair]").count() == 0


def test_zooming_a_small_picture_fills_the_window(page, alice):
    """Found on first use: a 64×64 picture stayed 64 px in the zoom overlay."""
    from tests.browser import store_images

    iteration = reviewing_iteration([[0.9], [0.2]])
    store_images(iteration)  # 64 × 48 pictures
    chosen, rejected = iteration.responses.order_by("seed")
    log_in(page, "alice")
    page.goto(reverse("review-pair", args=[iteration.number, chosen.pk, rejected.pk]))
    page.click("[data-zoom] img")
    page.wait_for_selector("img.zoomed")
    drawn = page.evaluate(
        """() => { const img = document.querySelector('img.zoomed'); const box = img.getBoundingClientRect();
                   const scale = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight);
                   return {scale, width: box.width, height: box.height, vw: innerWidth, vh: innerHeight}; }"""
    )
    assert drawn["scale"] * 48 >= 0.9 * drawn["vh"] or drawn["scale"] * 64 >= 0.9 * drawn["vw"], drawn
    page.click("img.zoomed")
    page.wait_for_selector("img.zoomed", state="detached")


def test_the_dashboard_leads_with_the_figure_that_matters_and_fits_the_window(browser, live_server, alice):
    """Found on first use: eleven single-point charts and no words, and a page 1498 px wide at 1400."""
    start = {"truth_count_chair_s": 0.70, "answer_hallucination_rate": 0.5}
    now = {"truth_count_chair_s": 0.45, "answer_hallucination_rate": 0.3, "truth_labeler_accuracy": 0.99,
           "details": {"instructions": 500}}  # fmt: skip
    IterationFactory(number=1, status=IterationStatus.DONE, checkpoint="checkpoints/iteration-1",
                     metrics={"baseline": start, "eval": now})  # fmt: skip
    reviewing_iteration(*[[[0.9, 0.9], [0.9, 0.2]] for _ in range(3)], number=2)
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        log_in(page, "alice")
        lead = page.locator("[data-headline]")
        assert "count-aware CHAIRs" in lead.locator("h2").inner_text()
        assert page.inner_text("[data-headline-start]") == "70.0%"
        assert page.inner_text("[data-headline-now]") == "45.0%"
        assert page.inner_text("[data-headline-change]") == "(-25.0 points)"
        assert "95% interval [40.7%, 49.4%] over its 500 held-out answers" in lead.inner_text()
        assert "The labeler is wrong on 1.0% of claims, on held-out claims, against the truth" in lead.inner_text()
        assert "Iteration 2 waits at its review gate" in page.inner_text("[data-next-step]")
        box = lead.bounding_box()
        assert box["y"] < 300  # first on the page
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400
        assert not page.locator("details.trends-fold").get_attribute("open")  # the charts, folded below
    finally:
        context.close()
