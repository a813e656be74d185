"""What a first use tripped on: settings carried to the next iteration, refusals that say the right thing,
styled error pages, strict action URLs, failure reasons, monotonic progress, limits, import messages."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from tests.factories import InstructionFactory, IterationFactory, JobFactory
from webapp.iterations import lifecycle
from webapp.iterations.progress import iteration_progress
from webapp.jobs.runner import fail_job
from webapp.jobs.train_evaluate import TrainingFailed
from webapp.models import Iteration, IterationStatus, Job

pytestmark = pytest.mark.django_db


# --- the next iteration repeats the previous one's settings ---------------------------------------------------


def shapes_like_iteration():
    """Done and trained, on one source and split, with settings the form has no field for."""
    iteration = IterationFactory(
        status=IterationStatus.DONE,
        policy="shapes-policy",
        labeler="shapes-labeler",
        checkpoint="checkpoints/iteration-1",
        config={"n": 6, "max_new_tokens": 40, "learning_rate": 3e-5, "epochs": 3, "sft_weight": 1.0,
                "eval_temperature": 0.7, "imported_from": "x.parquet", "sha256": "ab" * 32},
    )  # fmt: skip
    iteration.instructions.set(InstructionFactory.create_batch(3, source="shapes"))
    InstructionFactory(source="other")
    return iteration


def test_create_it_starts_from_the_previous_iterations_settings(client, bob, install):
    install("shapes-policy", "shapes-labeler", "checkpoints/iteration-1")
    previous = shapes_like_iteration()
    client.force_login(bob)
    form = client.get(reverse("iteration-new"), {"from": previous.number}).context["form"]
    values = {name: form[name].value() for name in form.fields}
    assert values["policy"] == "checkpoints/iteration-1"  # its checkpoint is the next policy
    assert (values["labeler"], values["source"], values["split"]) == ("shapes-labeler", "shapes", "train")
    assert (values["n"], values["max_new_tokens"], values["learning_rate"], values["epochs"]) == (6, 40, 3e-5, 3)
    assert json.loads(values["other_settings"]) == {"sft_weight": 1.0, "eval_temperature": 0.7}  # no origin

    # Posting the form as shown creates an iteration with the same config (the import's origin left out).
    posted = {name: value for name, value in values.items() if value is not None}
    response = client.post(reverse("iteration-new"), posted)
    created = Iteration.objects.get(number=previous.number + 1)
    assert response["Location"] == reverse("iteration", args=[created.number])
    assert created.policy == "checkpoints/iteration-1" and created.labeler == "shapes-labeler"
    expected = {k: v for k, v in previous.config.items() if k not in ("imported_from", "sha256")}
    assert {k: created.config[k] for k in expected} == expected
    assert "sha256" not in created.config
    assert set(created.instructions.all()) == set(previous.instructions.all())


def test_the_new_iteration_form_defaults_to_the_latest_iteration(client, bob):
    shapes_like_iteration()
    client.force_login(bob)
    form = client.get(reverse("iteration-new")).context["form"]
    assert form["max_new_tokens"].value() == 40
    assert client.get(reverse("iteration-new"), {"from": 99}).status_code == 404


def test_the_links_to_a_new_iteration_carry_the_previous_one(client, bob):
    previous = shapes_like_iteration()
    client.force_login(bob)
    link = f"{reverse('iteration-new')}?from={previous.number}"
    assert link in client.get(reverse("home")).content.decode()  # "create it"
    assert link in client.get(reverse("iteration", args=[previous.number])).content.decode()


def test_other_settings_must_be_a_json_object_of_known_strategy_and_bounded_size(client, bob):
    InstructionFactory()
    client.force_login(bob)
    form = {"policy": "tiny-llava", "labeler": "tiny-llava", "splitter": "rule", "engine": "transformers",
            "split": "train", "n": 2, "temperature": 0.7, "top_p": 1.0, "max_new_tokens": 8, "seed": 0,
            "pairs_per_instruction": 1, "beta": 0.1, "learning_rate": 1e-6, "epochs": 1}  # fmt: skip
    for bad, message in [
        ("[1, 2]", "Give a JSON object"),
        ('{"strategy": "vibes"}', "strategy must be one of rlaifv, whole_response, self_reward"),
        ('{"x": "' + "a" * 20_000 + '"}', "over the limit of 10000"),
    ]:
        response = client.post(reverse("iteration-new"), form | {"other_settings": bad})
        assert response.status_code == 200 and message in response.content.decode()
    assert not Iteration.objects.exists()
    client.post(reverse("iteration-new"), form | {"other_settings": '{"strategy": "self_reward"}'})
    assert Iteration.objects.get().config["strategy"] == "self_reward"


# --- refusals say the right thing; unknown actions are not found ----------------------------------------------


def test_a_reviewer_on_a_staff_page_is_told_it_is_for_staff(client, alice):
    client.force_login(alice)
    response = client.get(reverse("iteration-new"))
    html = response.content.decode()
    assert response.status_code == 403 and "Only staff may do this" in html
    assert "reviewer group" not in html  # joining it would not help them


def test_an_outsider_on_a_review_page_is_told_how_to_become_a_reviewer(client, charlie):
    client.force_login(charlie)
    html = client.get(reverse("review-pairs")).content.decode()
    assert "This page is for reviewers and staff" in html and "ask a staff member to add you" in html


def test_an_unknown_iteration_action_is_not_found(client, bob):
    IterationFactory(number=1)
    client.force_login(bob)
    for method in (client.get, client.post):
        assert method("/iterations/1/bogus/").status_code == 404
    assert client.get("/iterations/1/launch/").status_code == 405  # a real action, POST only


# --- styled error pages and a favicon, with DEBUG off ---------------------------------------------------------


@pytest.fixture
def production(settings):
    """DEBUG off, as deployed: Django then renders templates/404.html and 500.html instead of its debug pages."""
    settings.DEBUG = False
    settings.STORAGES = settings.STORAGES | {
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    }
    return settings


def assert_styled(response, status, heading):
    html = response.content.decode()
    assert response.status_code == status
    assert f"<h1>{heading}</h1>" in html and "/static/webapp/app.css" in html and "favicon.svg" in html
    assert "<style" not in html and "style=" not in html and "<script>" not in html  # nothing the CSP blocks


def test_not_found_and_no_access_pages_are_styled(client, bob, charlie, production):
    client.force_login(bob)
    assert_styled(client.get("/iterations/1/bogus/"), 404, "Not found")
    assert_styled(client.get(reverse("iteration", args=[99])), 404, "Not found")
    client.force_login(charlie)
    assert_styled(client.get(reverse("review-pairs")), 403, "No access")


def test_a_server_error_page_is_styled(production, bob, monkeypatch):
    from webapp.dashboard import views as dashboard

    def broken(*args, **kwargs):
        raise RuntimeError("the database is on fire")

    monkeypatch.setattr(dashboard, "iteration_stats", broken)
    client = Client(raise_request_exception=False)
    client.force_login(bob)
    response = client.get(reverse("home"))
    assert_styled(response, 500, "Something went wrong")
    assert "on fire" not in response.content.decode()


def test_an_expired_form_gets_a_styled_page(production, bob):
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    assert_styled(client.post(reverse("iteration-action", args=[1, "launch"])), 403, "The form expired")


def test_the_favicon_is_a_static_file(client, alice):
    from django.contrib.staticfiles import finders

    assert finders.find("webapp/favicon.svg")
    client.force_login(alice)
    assert 'rel="icon" href="/static/webapp/favicon.svg"' in client.get(reverse("home")).content.decode()


# --- the live status and its buttons; a failure's reason --------------------------------------------------------

LIVE = {"HX-Request": "true", "HX-Target": "live"}


def test_the_cancel_button_goes_when_the_polled_status_stops(client, bob):
    iteration = IterationFactory(number=1, status=IterationStatus.LABELING)
    client.force_login(bob)
    cancel = reverse("iteration-action", args=[1, "cancel"])
    assert cancel in client.get(reverse("iteration", args=[1])).content.decode()
    running = client.get(reverse("iteration", args=[1]), headers=LIVE)
    assert running.status_code == 200 and cancel in running.content.decode()
    for status, button in [("done", None), ("failed", "resume"), ("cancelled", "resume"), ("reviewing", "approve")]:
        Iteration.objects.filter(pk=iteration.pk).update(status=status)
        stopped = client.get(reverse("iteration", args=[1]), headers=LIVE)
        html = stopped.content.decode()
        assert stopped.status_code == 286 and f'data-status="{status}"' in html  # polling stops here
        assert cancel not in html
        if button:
            assert reverse("iteration-action", args=[1, button]) in html
    # The dashboard polls the same URL for the status alone: no buttons there.
    Iteration.objects.filter(pk=iteration.pk).update(status="labeling")
    fragment = client.get(reverse("iteration", args=[1]), headers={"HX-Request": "true"}).content.decode()
    assert "data-status" in fragment and cancel not in fragment


def test_a_failed_training_shows_one_line_of_reason_and_folds_the_log_tail(client, alice):
    iteration = IterationFactory(number=1, status=IterationStatus.TRAINING)
    job = JobFactory(iteration=iteration, kind="train", chunk=0, total=0)
    tail = [f"step {n}: loss 0.69" for n in range(25)] + ["torch.OutOfMemoryError: CUDA out of memory"]
    failure = TrainingFailed(f"`python -m training dpo` exited with status 1: {tail[-1]}\n" + "\n".join(tail))
    fail_job(job.pk, failure)
    client.force_login(alice)
    html = client.get(reverse("iteration", args=[1])).content.decode()
    reason = html.split("data-error-reason>", 1)[1].split("</p>", 1)[0]
    assert reason == (
        "train chunk 0: TrainingFailed: `python -m training dpo` exited with status 1: "
        "torch.OutOfMemoryError: CUDA out of memory"
    )
    details = html.split("<details", 1)[1].split("</details>", 1)[0]
    assert "step 0: loss 0.69" in details and "step 0: loss" not in reason
    assert "<summary>" in details and " open" not in details.split(">", 1)[0]  # folded


def test_a_one_line_error_has_no_details(client, alice):
    IterationFactory(number=1, status=IterationStatus.FAILED, error="label chunk 3: ModelLoadError: no such model")
    client.force_login(alice)
    html = client.get(reverse("iteration", args=[1])).content.decode()
    assert "label chunk 3: ModelLoadError: no such model" in html and "<details" not in html


# --- progress never goes back ---------------------------------------------------------------------------------


def test_a_jobs_progress_never_goes_back_on_retry_or_resume():
    iteration = IterationFactory(status=IterationStatus.LABELING)
    job = JobFactory(iteration=iteration, kind="label", total=10)

    def shown():
        (stage,) = iteration_progress(iteration.pk)
        return stage.done, stage.total

    job.start(total=10)
    job.progress(6)
    assert shown() == (6, 10)
    job.start(total=10)  # a retry: the chunk is worked through again from its last commit
    job.progress(2)
    assert shown() == (6, 10)
    job.progress(8)
    assert shown() == (8, 10)
    job.progress(50)  # never past the total
    assert shown() == (10, 10)

    Job.objects.filter(pk=job.pk).update(done=7)
    fail_job(job.pk, RuntimeError("worker lost"))
    iteration.refresh_from_db()
    assert lifecycle.resume(iteration)
    job.refresh_from_db()
    assert (job.state, job.done) == ("pending", 7)  # resumed, not reset
    assert shown() == (7, 10)


# --- the pair list: its default iteration, sources, search ---------------------------------------------------


def listed(client, **params):
    response = client.get(reverse("review-pairs"), params)
    assert response.status_code == 200
    return response.context["iteration"], {p.pk for p in response.context["page"].pairs}


def test_the_pair_list_shows_the_latest_iteration_that_has_pairs(client, alice):
    from tests.review_data import reviewing_iteration

    done = reviewing_iteration([[0.9], [0.2]])
    Iteration.objects.filter(pk=done.pk).update(status=IterationStatus.DONE)
    IterationFactory(status=IterationStatus.GENERATING)  # newer, no pairs yet
    client.force_login(alice)
    shown, pairs = listed(client)
    assert shown == done and len(pairs) == 1


def test_the_source_filter_offers_the_existing_sources(client, alice):
    from tests.review_data import reviewing_iteration

    iteration = reviewing_iteration([[0.9], [0.2]], [[0.9], [0.1]])
    first, second = iteration.instructions.order_by("pk")
    type(first).objects.filter(pk=second.pk).update(source="coco")
    client.force_login(alice)
    html = client.get(reverse("review-pairs")).content.decode()
    select = html.split('name="source"', 1)[1].split("</select>", 1)[0]
    assert '<option value="coco">coco</option>' in select and '<option value="test">test</option>' in select
    shown, pairs = listed(client, source="coco")
    assert pairs == set(iteration.pairs.filter(instruction=second).values_list("pk", flat=True))


def test_the_search_runs_over_questions_and_answers(client, alice):
    from tests.review_data import reviewing_iteration

    texts = {0: "A zebra grazes beside the river.", 1: "Two zebras are grazing near a lake."}
    iteration = reviewing_iteration([[0.9], [0.2]], [[0.9], [0.1]], texts=texts)
    InstructionModel = type(iteration.instructions.first())
    first, second = iteration.instructions.order_by("pk")
    InstructionModel.objects.filter(pk=second.pk).update(question="How many giraffes are drinking?")
    pair_of = {i: iteration.pairs.get(instruction=i).pk for i in (first, second)}
    client.force_login(alice)
    assert listed(client, q="giraffes")[1] == {pair_of[second]}  # a question's word
    assert listed(client, q="zebra")[1] == set(pair_of.values())  # the answers' words
    assert listed(client, q="giraffes drinking")[1] == {pair_of[second]}  # every word, in one text
    assert listed(client, q="zebra river")[1] == set(pair_of.values())
    assert listed(client, q="giraffes river")[1] == set()
    assert listed(client, q="unicorn")[1] == set()
    assert listed(client, q="   ")[1] == set(pair_of.values())  # blank: no search


# --- length limits --------------------------------------------------------------------------------------------


def test_a_megabyte_note_is_refused_with_a_clear_message(client, alice):
    from tests.review_data import reviewing_iteration
    from tests.test_review_views import HTMX, claim, pair_url
    from webapp.models import Review

    iteration = reviewing_iteration([[0.9, 0.8], [0.9, 0.45]])
    client.force_login(alice)
    decision = {"hallucinated": claim(iteration, 0).pk}
    response = client.post(pair_url(iteration), decision | {"note": "x" * 1_000_000}, **HTMX)
    assert response.status_code == 400
    assert response.content.decode() == (
        "The note is 1000000 characters long, over the limit of 2000: shorten it and decide again."
    )
    assert not Review.objects.exists()
    assert client.post(pair_url(iteration), decision | {"note": "x" * 2000}, **HTMX).status_code == 200
    assert len(Review.objects.get().note) == 2000


def test_every_free_text_field_has_a_documented_limit():
    """A TextField without a length validator, or a limit the docs do not list, fails here."""
    from pathlib import Path

    from django.apps import apps
    from django.core.validators import MaxLengthValidator
    from django.db import models

    docs = (Path(__file__).resolve().parent.parent / "docs" / "ARCHITECTURE.md").read_text()
    for model in apps.get_app_config("webapp").get_models():
        for field in model._meta.get_fields():
            if isinstance(field, models.TextField):
                limit = [v.limit_value for v in field.validators if isinstance(v, MaxLengthValidator)]
                assert limit, f"{model.__name__}.{field.name} has no length limit"
            elif isinstance(field, models.CharField) and not field.choices:
                limit = [field.max_length]
            else:
                continue
            assert f"`{model.__name__}.{field.name}` | {limit[0]:,}".replace(",", " ") in docs, (
                f"docs/ARCHITECTURE.md does not list {model.__name__}.{field.name}'s limit {limit[0]}"
            )


# --- make demo, run again -----------------------------------------------------------------------------------


def run(command, *args) -> str:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command(command, *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(
    "status, said",
    [
        ("reviewing", "Iteration 1 already at its review gate; serving it"),
        ("training", "Iteration 1 is already past its review gate (training); serving it"),
        ("done", "Iteration 1 is already past its review gate (done); serving it"),
    ],
)
def test_make_demo_run_again_says_what_it_found(status, said):
    IterationFactory(number=1, status=status)
    assert run("demo_iteration").strip() == said
    assert Iteration.objects.count() == 1 and Iteration.objects.get().status == status  # nothing redone


def test_make_demo_run_again_keeps_the_shapes_models(settings, tmp_path):
    from training.shapes_models import LABELER, POLICY, RECORD_FILE

    settings.MODELS_DIR = tmp_path
    for name in (LABELER, POLICY):
        (tmp_path / name).mkdir()
        (tmp_path / name / RECORD_FILE).write_text("{}")
    said = run("build_shapes_models")
    assert said.strip() == f"shapes models: {LABELER}, {POLICY} already under {tmp_path}; kept"
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted([LABELER, POLICY, RECORD_FILE, RECORD_FILE])


def test_make_demo_run_again_says_the_login_was_reset(db):
    assert "no longer works" not in run("demo_user")
    assert "(a new password: the earlier one no longer works)" in run("demo_user")
