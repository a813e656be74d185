"""Export and import in a real Chromium: a streamed download, and uploads imported by a real Celery worker."""

import json

import pytest
from django.urls import reverse

from tests.browser import BROWSER_MARKS, log_in
from tests.test_export_import import export, two_pair_iteration
from tests.test_importing import png_bytes
from tests.test_transfer import folder_files, stored_images, unzipped, zip_of
from webapp.models import Instruction, InstructionImport

pytestmark = BROWSER_MARKS


@pytest.fixture
def iteration(media_root):
    return two_pair_iteration()


def test_staff_download_each_export_from_the_iteration_page(page, bob, iteration, tmp_path):
    log_in(page, "bob")
    page.goto(reverse("iteration", args=[iteration.number]))
    with page.expect_download() as parquet:
        page.click("text=RLAIF-V layout (parquet)")
    assert parquet.value.suggested_filename == "iteration-1-rlaifv.parquet"
    export("rlaifv", tmp_path / "rlaifv.parquet")
    assert open(parquet.value.path(), "rb").read() == (tmp_path / "rlaifv.parquet").read_bytes()

    with page.expect_download() as bundle:
        page.click("text=TRL JSONL with its images (zip)")
    assert bundle.value.suggested_filename == "iteration-1-jsonl.zip"
    export("jsonl", tmp_path / "jsonl" / "pairs.jsonl")
    assert unzipped(open(bundle.value.path(), "rb").read()) == folder_files(tmp_path / "jsonl")


LINES = [
    {"image": "photos/red.png", "question": "What color is it?"},
    {"image": "photos/blue.png", "question": "Describe it.", "split": "heldout"},
]


def upload(page, images, lines=LINES):
    page.goto(reverse("imports"))
    jsonl = "\n".join(json.dumps(line) for line in lines).encode()
    page.set_input_files("#id_jsonl", {"name": "data.jsonl", "mimeType": "application/jsonl", "buffer": jsonl})
    page.set_input_files("#id_images", {"name": "photos.zip", "mimeType": "application/zip", "buffer": images})
    page.fill("#id_source", "browser")
    page.click("text=Upload and import")
    page.wait_for_url("**/imports/*/")


def test_an_upload_is_imported_by_a_worker_while_the_page_shows_its_progress(page, bob, processes):
    processes.wait_ready(processes.worker(queues="cpu"))
    log_in(page, "bob")
    upload(page, zip_of(("photos/red.png", png_bytes()), ("photos/blue.png", png_bytes(color=(0, 0, 255)))))
    page.wait_for_selector("[data-state='succeeded']", timeout=60_000)  # swapped in by the polling fragment
    assert page.get_attribute("#import-progress progress", "value") == "100"
    assert "2 instructions imported, 0 already there." in page.inner_text("#import-progress")
    assert sorted(Instruction.objects.values_list("question", "source")) == [
        ("Describe it.", "browser"),
        ("What color is it?", "browser"),
    ]
    assert InstructionImport.objects.get().worker.startswith("w1@")


def test_an_upload_with_one_bad_member_is_refused_whole_naming_it(page, bob, processes, media_root):
    processes.wait_ready(processes.worker(queues="cpu"))
    log_in(page, "bob")
    bad = b"<svg xmlns='http://www.w3.org/2000/svg'/>"
    upload(page, zip_of(("photos/red.png", png_bytes()), ("photos/blue.png", bad)))
    page.wait_for_selector("[data-state='failed']", timeout=60_000)
    error = page.inner_text("#import-progress .error")
    assert error.startswith("data.jsonl: line 2: photos/blue.png: not a readable image"), error
    assert "Nothing was imported" in page.inner_text("#import-progress")
    assert not Instruction.objects.exists() and stored_images(media_root) == []


def test_a_waiting_upload_says_what_it_waits_for(page, bob, media_root):
    """Found on first use: an upload sat at a bare "pending" while the only worker trained."""
    from tests.factories import IterationFactory, JobFactory
    from webapp.models import IterationStatus, JobKind, JobState

    training = IterationFactory(status=IterationStatus.TRAINING)
    JobFactory(iteration=training, kind=JobKind.TRAIN, state=JobState.RUNNING)
    log_in(page, "bob")
    upload(page, zip_of(("photos/red.png", png_bytes()), ("photos/blue.png", png_bytes(color=(0, 0, 255)))))
    page.wait_for_selector("[data-state='pending']")
    waiting = page.inner_text("[data-waiting]")
    assert "Waiting for a worker of the cpu queue" in waiting
    assert f"busy with {training}'s train stage" in waiting
