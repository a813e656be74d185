"""Time left on the progress bars, in a real Chromium (tests/browser.py): the running stage shows its measured
throughput and the time it has left, and both follow the stage as the page polls."""

from datetime import timedelta

from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser import BROWSER_MARKS, log_in
from tests.factories import InstructionFactory, IterationFactory, JobFactory
from webapp.models import IterationStatus, Job, JobKind, JobState

pytestmark = BROWSER_MARKS


def labeling_iteration():
    """Label chunks of 32 instructions (320 claims each): three took 400 s each, started 100 s apart, so the stage
    ran 96 instructions in 600 s; one is halfway and two wait. 80 instructions left at 0.16/s: 500 s."""
    iteration = IterationFactory(number=1, status=IterationStatus.LABELING)
    instructions = InstructionFactory.create_batch(6 * 32)
    iteration.instructions.set(instructions)
    now = timezone.now()
    ids = [[i.pk for i in instructions[n * 32 : (n + 1) * 32]] for n in range(6)]
    for n in range(3):
        started = now - timedelta(seconds=800 - 100 * n)
        finished = started + timedelta(seconds=400)
        JobFactory(iteration=iteration, kind=JobKind.LABEL, chunk=n, instruction_ids=ids[n], total=320, done=320,
                   state=JobState.SUCCEEDED, started_at=started, finished_at=finished)  # fmt: skip
    running = JobFactory(iteration=iteration, kind=JobKind.LABEL, chunk=3, instruction_ids=ids[3], total=320,
                         done=160, state=JobState.RUNNING, started_at=now - timedelta(seconds=200))  # fmt: skip
    for n in (4, 5):
        JobFactory(iteration=iteration, kind=JobKind.LABEL, chunk=n, instruction_ids=ids[n], total=32)
    return iteration, running


def test_the_running_stage_shows_its_throughput_and_time_left_as_it_goes(page, alice):
    iteration, running = labeling_iteration()
    log_in(page, "alice")
    page.goto(reverse("iteration", args=[iteration.number]))

    eta = page.locator('[data-eta="label"]')
    expect(eta).to_have_text("1.6 claims/s · about 8 min left")  # 960 claims in 600 s; 500 s left

    # The running chunk finishes: four chunks, 128 instructions from 800 s ago to now; 64 left at 0.16/s: 400 s.
    now = timezone.now()
    Job.objects.filter(pk=running.pk).update(state=JobState.SUCCEEDED, done=320, finished_at=now)
    expect(eta).to_have_text("1.6 claims/s · about 7 min left", timeout=5000)  # the page polls every second

    Job.objects.filter(iteration=iteration).update(state=JobState.SUCCEEDED, done=F("total"), finished_at=now)
    expect(eta).not_to_contain_text("left", timeout=5000)  # a finished stage has no time left
    page.goto("/")
    expect(page.locator('[data-eta="label"]').first).to_contain_text("claims/s")
