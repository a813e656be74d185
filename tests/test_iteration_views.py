"""Staff create, launch, approve, resume and cancel iterations; reviewers watch; others are refused."""

import pytest
from django.test import Client
from django.urls import reverse

from tests.factories import InstructionFactory, IterationFactory, JobFactory
from webapp.models import Iteration, IterationStatus, Job, JobState

pytestmark = pytest.mark.django_db


def action(number, name):
    return reverse("iteration-action", args=[number, name])


def test_anonymous_visitors_are_sent_to_log_in(client):
    IterationFactory(number=1)
    for url in [reverse("iterations"), reverse("iteration-new"), reverse("iteration", args=[1])]:
        assert client.get(url)["Location"].startswith(reverse("login"))
    response = client.post(action(1, "launch"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_outsiders_may_not_watch_and_reviewers_may_not_act(client, alice, charlie):
    iteration = IterationFactory(number=1)
    iteration.instructions.add(InstructionFactory())
    client.force_login(charlie)
    assert client.get(reverse("iterations")).status_code == 403
    assert client.get(reverse("iteration", args=[1])).status_code == 403
    client.force_login(alice)
    assert client.get(reverse("iterations")).status_code == 200
    assert client.get(reverse("iteration", args=[1])).status_code == 200
    assert client.get(reverse("iteration-new")).status_code == 403
    assert client.post(action(1, "launch")).status_code == 403
    iteration.refresh_from_db()
    assert iteration.status == IterationStatus.DRAFT


def test_staff_create_a_draft_on_the_chosen_instructions(client, bob):
    InstructionFactory.create_batch(3, source="coco")
    InstructionFactory(source="coco", split="heldout")
    InstructionFactory(source="other")
    client.force_login(bob)
    assert client.get(reverse("iteration-new")).status_code == 200
    form = {"policy": "tiny-llava", "labeler": "tiny-llava", "splitter": "rule", "engine": "transformers",
            "source": "coco", "split": "train", "n": 4, "temperature": 0.7, "top_p": 1.0, "max_new_tokens": 32,
            "seed": 0, "pairs_per_instruction": 2, "beta": 0.1, "learning_rate": 5e-7, "epochs": 1}  # fmt: skip
    response = client.post(reverse("iteration-new"), form)
    iteration = Iteration.objects.get()
    assert response["Location"] == reverse("iteration", args=[iteration.number])
    assert (iteration.number, iteration.status, iteration.created_by) == (1, IterationStatus.DRAFT, bob)
    assert iteration.config["n"] == 4 and iteration.config["max_new_tokens"] == 32
    assert iteration.instructions.count() == 3
    response = client.post(reverse("iteration-new"), form | {"source": "nowhere"})
    assert response.status_code == 200 and Iteration.objects.count() == 1


def test_staff_launch_and_the_jobs_appear(client, bob, django_capture_on_commit_callbacks):
    iteration = IterationFactory(number=1, config={"chunk_size": 2})
    iteration.instructions.set(InstructionFactory.create_batch(5))
    client.force_login(bob)
    with django_capture_on_commit_callbacks() as sent:
        client.post(action(1, "launch"))
    iteration.refresh_from_db()
    assert iteration.status == IterationStatus.GENERATING
    assert Job.objects.filter(iteration=iteration, kind="generate").count() == 3
    assert len(sent) == 3  # one task per chunk, sent once the transaction committed
    client.post(action(1, "launch"))  # launching twice does nothing more
    assert Job.objects.count() == 3


def test_the_progress_partial_polls_until_the_iteration_stops(client, alice):
    iteration = IterationFactory(number=1, status=IterationStatus.LABELING)
    JobFactory(iteration=iteration, kind="label", done=3, total=10, state=JobState.RUNNING)
    client.force_login(alice)
    page = client.get(reverse("iteration", args=[1]))
    assert b'hx-trigger="every 1s"' in page.content
    partial = client.get(reverse("iteration", args=[1]), headers={"HX-Request": "true"})
    assert partial.status_code == 200 and b'value="30"' in partial.content and b"<html" not in partial.content
    Iteration.objects.filter(pk=iteration.pk).update(status=IterationStatus.REVIEWING)
    assert client.get(reverse("iteration", args=[1]), headers={"HX-Request": "true"}).status_code == 286


def test_actions_follow_the_state_machine(client, bob):
    iteration = IterationFactory(number=1, status=IterationStatus.REVIEWING)
    client.force_login(bob)
    client.post(action(1, "resume"))  # not failed: nothing happens
    iteration.refresh_from_db()
    assert iteration.status == IterationStatus.REVIEWING
    client.post(action(1, "cancel"))  # the review gate is not an active stage
    iteration.refresh_from_db()
    assert iteration.status == IterationStatus.REVIEWING
    client.post(action(1, "approve"))
    iteration.refresh_from_db()
    assert iteration.status == IterationStatus.TRAINING
    client.post(action(1, "cancel"))
    iteration.refresh_from_db()
    assert (iteration.status, iteration.stopped_stage) == (IterationStatus.CANCELLED, IterationStatus.TRAINING)
    assert client.post("/iterations/1/explode/").status_code == 404  # only the four actions have a URL
    assert client.post(action(99, "launch")).status_code == 404
    assert client.get(action(1, "launch")).status_code == 405


def test_actions_need_the_csrf_token(bob):
    IterationFactory(number=1)
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    assert client.post(action(1, "launch")).status_code == 403
