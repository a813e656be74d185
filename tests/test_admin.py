"""The admin: iterations are created as drafts and driven through the lifecycle; what the pipeline and the review
pages write (reviews, verdicts, pairs, jobs, answers, claims) is read-only there."""

import json

import pytest
from django.contrib.admin import site
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.test import Client
from django.urls import reverse

from tests.factories import (
    ClaimFactory,
    InstructionFactory,
    IterationFactory,
    JobFactory,
    PreferencePairFactory,
    ReviewFactory,
    UserFactory,
    VerdictFactory,
)
from tests.review_data import reviewing_iteration
from webapp.models import Decision, Iteration, IterationStatus, Job, JobKind, PreferencePair, Response, Review

pytestmark = pytest.mark.django_db
S = IterationStatus


def admin_url(model: str, view: str, *args) -> str:
    return reverse(f"admin:webapp_{model}_{view}", args=args)


def lifecycle_url(iteration, action: str) -> str:
    return reverse("admin:webapp_iteration_lifecycle", args=[iteration.pk, action])


def said(response) -> list[str]:
    """The messages the page a redirect led to showed (and so used up)."""
    return [str(m) for m in response.context["messages"]]


def draft(number=1, **fields):
    iteration = IterationFactory(number=number, **fields)
    iteration.instructions.set(InstructionFactory.create_batch(3))
    return iteration


@pytest.fixture
def staff(client, bob):
    client.force_login(bob)
    return client


# --- creating an iteration ----------------------------------------------------------------------------------

NEW = {"policy": "tiny-llava", "labeler": "tiny-llava", "splitter": "rule", "engine": "transformers",
       "source": "coco", "split": "train", "n": 4, "temperature": 0.7, "top_p": 1.0, "max_new_tokens": 32,
       "seed": 0, "pairs_per_instruction": 2, "beta": 0.1, "learning_rate": 5e-7, "epochs": 1}  # fmt: skip


def test_staff_create_a_draft_on_the_instructions_of_a_source_and_split(staff, bob):
    coco = InstructionFactory.create_batch(3, source="coco")
    InstructionFactory(source="coco", split="heldout")
    InstructionFactory(source="other")
    IterationFactory(number=4, status=S.DONE)
    page = staff.get(admin_url("iteration", "add"))
    assert page.status_code == 200
    assert {"source", "split", "n", "policy"} <= set(page.context["adminform"].form.fields)
    assert "status" not in page.context["adminform"].form.fields

    response = staff.post(admin_url("iteration", "add"), NEW | {"status": S.REVIEWING, "checkpoint": "x"})
    iteration = Iteration.objects.get(number=5)
    assert response["Location"] == admin_url("iteration", "changelist")
    assert (iteration.status, iteration.checkpoint, iteration.created_by) == (S.DRAFT, "", bob)
    assert set(iteration.instructions.all()) == set(coco)
    assert iteration.config["n"] == 4 and iteration.config["max_new_tokens"] == 32


def test_the_add_form_refuses_a_source_and_split_with_no_instructions_and_a_model_url(staff):
    InstructionFactory(source="coco")
    InstructionFactory(source="other", split="validation")
    response = staff.post(admin_url("iteration", "add"), NEW | {"source": "other"})
    assert response.status_code == 200
    assert "No instructions match this source and split." in response.content.decode()
    response = staff.post(admin_url("iteration", "add"), NEW | {"split": "heldout"})  # the test split
    assert "the held-out split is the test split the figures report" in response.content.decode()
    response = staff.post(admin_url("iteration", "add"), NEW | {"policy": "http://example.com/model"})
    assert "not a URL" in response.content.decode()
    assert not Iteration.objects.exists()


def test_the_add_form_defaults_the_policy_to_the_latest_done_iterations_checkpoint(staff):
    IterationFactory(number=1, status=S.DONE, checkpoint="checkpoints/iteration-1")
    IterationFactory(number=2, status=S.DONE, checkpoint="checkpoints/iteration-2")
    IterationFactory(number=3, status=S.EVALUATING, checkpoint="checkpoints/iteration-3")  # not evaluated yet
    IterationFactory(number=4, status=S.FAILED)
    form = staff.get(admin_url("iteration", "add")).context["adminform"].form
    assert form["policy"].value() == "checkpoints/iteration-2"


def test_the_add_form_starts_from_the_latest_iterations_settings_all_of_them(staff, install):
    """Found on first use: it offered 512 new tokens, lr 5e-7, 4 epochs, every source and no field for the other
    settings (length balance, SFT weight, batch sizes, …), which were lost: now it is the staff page's form."""
    install("shapes-policy", "shapes-labeler", "checkpoints/iteration-1")
    config = {"n": 6, "max_new_tokens": 40, "learning_rate": 3e-5, "epochs": 3, "sft_weight": 1.0,
              "length_balance": True, "per_device_batch_size": 32, "eval_temperature": 0.7}  # fmt: skip
    latest = IterationFactory(number=1, status=S.DONE, policy="shapes-policy", labeler="shapes-labeler",
                              checkpoint="checkpoints/iteration-1", config=config)  # fmt: skip
    latest.instructions.set(InstructionFactory.create_batch(2, source="shapes"))
    InstructionFactory(source="other")
    form = staff.get(admin_url("iteration", "add")).context["adminform"].form
    values = {name: form[name].value() for name in form.fields}
    assert (values["policy"], values["labeler"], values["source"]) == (
        "checkpoints/iteration-1", "shapes-labeler", "shapes"
    )  # fmt: skip
    assert (values["n"], values["max_new_tokens"], values["learning_rate"], values["epochs"]) == (6, 40, 3e-5, 3)
    other = json.loads(values["other_settings"])
    assert other == {"sft_weight": 1.0, "length_balance": True, "per_device_batch_size": 32, "eval_temperature": 0.7}

    response = staff.post(admin_url("iteration", "add"), {k: v for k, v in values.items() if v is not None})
    assert response.status_code == 302
    created = Iteration.objects.get(number=2)
    assert {k: created.config[k] for k in config} == config
    assert created.labeler == "shapes-labeler" and created.instructions.count() == 2


def test_the_add_form_checks_every_model_name_against_what_is_installed(staff):
    InstructionFactory(source="coco")
    response = staff.post(admin_url("iteration", "add"), NEW | {"labeler": "llava-next-34b"})
    assert "no model &#x27;llava-next-34b&#x27; is installed under MODELS_DIR" in response.content.decode()
    response = staff.post(admin_url("iteration", "add"), NEW | {"other_settings": '{"second_labeler": "judge"}'})
    assert "no model &#x27;judge&#x27; is installed" in response.content.decode()
    assert not Iteration.objects.exists()


def test_the_iteration_page_shows_the_settings_as_json_the_forms_take(staff):
    iteration = draft(config={"length_balance": True, "sft_weight": 1.0})
    page = staff.get(reverse("iteration", args=[iteration.number])).content.decode()
    assert "&quot;length_balance&quot;: true" in page and "True" not in page


# --- what may change ----------------------------------------------------------------------------------------

CHANGE = {"policy": "small-llava", "labeler": "tiny-llava", "splitter": "rule", "engine": "transformers",
          "config": '{"n": 4}', "status": S.DONE, "checkpoint": "forged", "metrics": '{"eval": 1}',
          "error": "forged", "stopped_stage": S.TRAINING}  # fmt: skip


def test_a_drafts_models_and_config_change_but_never_its_lifecycle_fields(staff):
    iteration = draft()
    form = staff.get(admin_url("iteration", "change", iteration.pk)).context["adminform"].form
    assert set(form.fields) == {"policy", "labeler", "splitter", "engine", "config"}
    response = staff.post(admin_url("iteration", "change", iteration.pk), CHANGE)
    assert response.status_code == 302
    iteration.refresh_from_db()
    assert (iteration.policy, iteration.config) == ("small-llava", {"n": 4})
    assert (iteration.status, iteration.checkpoint, iteration.metrics) == (S.DRAFT, "", {})
    assert (iteration.error, iteration.stopped_stage) == ("", "")


def test_a_draft_launched_while_its_admin_form_was_open_keeps_what_it_was_launched_with(rf, bob):
    """The admin's save writes only the edited fields, and only while the row is still a draft."""
    iteration = draft()
    model_admin = site._registry[Iteration]
    request = rf.post("/")
    request.user, request.session = bob, {}
    request._messages = FallbackStorage(request)
    form_class = model_admin.get_form(request, iteration, change=True)
    form = form_class(CHANGE, instance=iteration)
    assert form.is_valid(), form.errors
    Iteration.objects.filter(pk=iteration.pk).update(status=S.GENERATING)  # someone launched it meanwhile

    model_admin.save_model(request, form.save(commit=False), form, change=True)
    iteration.refresh_from_db()
    assert (iteration.status, iteration.policy, iteration.config) == (S.GENERATING, "tiny-llava", {})
    assert [str(m) for m in get_messages(request)] == [
        "Iteration 1 was launched meanwhile: its settings were not changed."
    ]


def test_a_drafts_config_must_be_a_json_object(staff):
    iteration = draft()
    response = staff.post(admin_url("iteration", "change", iteration.pk), CHANGE | {"config": "[4]"})
    assert "Give the settings as a JSON object" in response.content.decode()
    iteration.refresh_from_db()
    assert iteration.config == {} and iteration.policy == "tiny-llava"


def test_a_drafts_config_is_bounded_and_deep_nesting_is_refused(staff):
    """Found by an attack: a 2 MB config was stored (the iteration page became 4 MB) and deeply nested JSON was a
    RecursionError, a 500."""
    iteration = draft()
    huge = json.dumps({"note": "x" * 2_000_000})
    response = staff.post(admin_url("iteration", "change", iteration.pk), CHANGE | {"config": huge})
    assert response.status_code == 200 and "over the limit" in response.content.decode()
    deep = "[" * 100_000 + "]" * 100_000
    response = staff.post(admin_url("iteration", "change", iteration.pk), CHANGE | {"config": deep})
    assert response.status_code == 200 and "nested too deeply" in response.content.decode()
    iteration.refresh_from_db()
    assert iteration.config == {}


def test_a_launched_iteration_is_read_only_and_offers_no_save(staff):
    iteration = draft(status=S.LABELING, config={"n": 2})
    page = staff.get(admin_url("iteration", "change", iteration.pk))
    assert list(page.context["adminform"].form.fields) == []
    assert 'name="_save"' not in page.content.decode()
    staff.post(admin_url("iteration", "change", iteration.pk), CHANGE)
    iteration.refresh_from_db()
    assert (iteration.status, iteration.policy, iteration.config, iteration.checkpoint) == (
        S.LABELING,
        "tiny-llava",
        {"n": 2},
        "",
    )


def test_the_change_page_summarises_the_jobs_and_links_to_them(staff):
    iteration = draft(status=S.LABELING)
    JobFactory.create_batch(2, iteration=iteration, kind=JobKind.LABEL)
    html = staff.get(admin_url("iteration", "change", iteration.pk)).content.decode()
    assert "label pending: 2" in html
    assert f"{admin_url('job', 'changelist')}?iteration__id__exact={iteration.pk}" in html
    assert staff.get(admin_url("job", "changelist"), {"iteration__id__exact": iteration.pk}).status_code == 200


def test_reviews_cannot_be_added_changed_or_deleted(staff, alice):
    iteration = reviewing_iteration([[0.9], [0.2]])
    claim = iteration.responses.get(seed=0).claims.get()
    review = ReviewFactory(claim=claim, reviewer=alice, decision=Decision.CORRECT)
    listing = staff.get(admin_url("review", "changelist"))
    assert listing.status_code == 200
    assert admin_url("review", "add") not in listing.content.decode()
    assert "delete_selected" not in listing.content.decode()
    form = {"claim": claim.pk, "reviewer": alice.pk, "decision": Decision.HALLUCINATED}
    assert staff.get(admin_url("review", "add")).status_code == 403
    assert staff.post(admin_url("review", "add"), form).status_code == 403
    page = staff.get(admin_url("review", "change", review.pk))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()  # view only
    assert staff.post(admin_url("review", "change", review.pk), form).status_code == 403
    assert staff.post(admin_url("review", "delete", review.pk), {"post": "yes"}).status_code == 403
    assert list(Review.objects.values_list("decision", flat=True)) == [Decision.CORRECT]


@pytest.mark.parametrize("model", ["verdict", "preferencepair", "job", "response", "claim"])
def test_what_the_pipeline_writes_is_read_only(staff, model):
    pair = PreferencePairFactory(iteration=IterationFactory(status=S.REVIEWING))
    rows = {
        "verdict": VerdictFactory(claim=ClaimFactory(response=pair.chosen)),
        "preferencepair": pair,
        "job": JobFactory(iteration=pair.iteration),
        "response": pair.chosen,
        "claim": ClaimFactory(response=pair.rejected),
    }
    row = rows[model]
    assert staff.get(admin_url(model, "changelist")).status_code == 200
    assert staff.get(admin_url(model, "add")).status_code == 403
    page = staff.get(admin_url(model, "change", row.pk))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert staff.post(admin_url(model, "change", row.pk), {"excluded": "on", "score": "-5"}).status_code == 403
    assert staff.post(admin_url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    assert type(row).objects.filter(pk=row.pk).exists()
    assert not PreferencePair.objects.filter(excluded=True).exists()
    assert Response.objects.get(pk=pair.chosen.pk).score is None


def test_an_iteration_with_answers_cannot_be_deleted_but_an_empty_draft_can(staff):
    reviewing = reviewing_iteration([[0.9], [0.2]])
    assert staff.post(admin_url("iteration", "delete", reviewing.pk), {"post": "yes"}).status_code == 403
    assert Iteration.objects.filter(pk=reviewing.pk).exists()
    empty = draft(number=2)
    assert staff.post(admin_url("iteration", "delete", empty.pk), {"post": "yes"}).status_code == 302
    assert not Iteration.objects.filter(pk=empty.pk).exists()


# --- the lifecycle: bulk actions of the list and buttons of the change page ----------------------------------


def bulk(client, action, *iterations):
    form = {"action": action, "index": 0, "_selected_action": [it.pk for it in iterations]}
    return client.post(admin_url("iteration", "changelist"), form, follow=True)


def test_the_list_launches_the_selected_drafts_and_says_which_it_could_not(staff, django_capture_on_commit_callbacks):
    one, two, running = draft(1, config={"chunk_size": 2}), draft(2), draft(3, status=S.GENERATING)
    with django_capture_on_commit_callbacks() as sent:
        response = bulk(staff, "launch", one, two, running)
    assert response.redirect_chain == [(admin_url("iteration", "changelist"), 302)]
    assert said(response) == [
        "Iteration 1: launch done.",
        "Iteration 2: launch done.",
        "Iteration 3 cannot launch from status generating.",
    ]
    assert [it.status for it in Iteration.objects.order_by("number")] == [S.GENERATING] * 3
    assert Job.objects.filter(iteration=one, kind=JobKind.GENERATE).count() == 2  # 3 instructions, chunks of 2
    assert len(sent) == 3  # one task per job, sent after the commit: 2 for one, 1 for two


def test_the_list_approves_cancels_and_resumes_through_the_lifecycle(staff, django_capture_on_commit_callbacks):
    reviewing = reviewing_iteration([[0.9], [0.2]])
    generating = draft(2, status=S.GENERATING)
    with django_capture_on_commit_callbacks():
        assert said(bulk(staff, "approve", reviewing)) == [f"{reviewing}: approve done."]
        assert said(bulk(staff, "cancel", generating)) == ["Iteration 2: cancel done."]
        generating.refresh_from_db()
        assert (generating.status, generating.stopped_stage) == (S.CANCELLED, S.GENERATING)
        assert said(bulk(staff, "resume", generating)) == ["Iteration 2: resume done."]
    reviewing.refresh_from_db()
    generating.refresh_from_db()
    assert reviewing.status == S.TRAINING and Job.objects.filter(iteration=reviewing, kind=JobKind.TRAIN).exists()
    assert (generating.status, generating.stopped_stage) == (S.GENERATING, "")


def test_the_list_refuses_with_the_staff_pages_words(staff):
    done, empty = draft(1, status=S.DONE), IterationFactory(number=2)
    assert said(bulk(staff, "cancel", done)) == ["Iteration 1 cannot cancel from status done."]
    assert said(bulk(staff, "approve", done)) == ["Iteration 1 cannot approve from status done."]
    assert said(bulk(staff, "resume", done)) == ["Iteration 1 cannot resume from status done."]
    assert said(bulk(staff, "launch", empty)) == ["Iteration 2 has no instructions to run on"]
    assert [it.status for it in Iteration.objects.order_by("number")] == [S.DONE, S.DRAFT]


@pytest.mark.parametrize(
    "status, buttons",
    [
        (S.DRAFT, ["launch"]),
        (S.LABELING, ["cancel"]),
        (S.REVIEWING, ["approve"]),
        (S.FAILED, ["resume"]),
        (S.CANCELLED, ["resume"]),
        (S.DONE, []),
    ],
)
def test_the_change_page_offers_the_buttons_its_status_allows(staff, status, buttons):
    iteration = draft(status=status)
    html = staff.get(admin_url("iteration", "change", iteration.pk)).content.decode()
    for action in ["launch", "approve", "resume", "cancel"]:
        assert (f'action="{lifecycle_url(iteration, action)}"' in html) == (action in buttons), action
    if status == S.REVIEWING:
        assert "Approve review gate and train" in html


def test_a_change_page_button_launches_and_comes_back_with_the_message(staff, django_capture_on_commit_callbacks):
    iteration = draft()
    with django_capture_on_commit_callbacks() as sent:
        response = staff.post(lifecycle_url(iteration, "launch"), follow=True)
    assert response.redirect_chain == [(admin_url("iteration", "change", iteration.pk), 302)]
    assert said(response) == ["Iteration 1: launch done."]
    iteration.refresh_from_db()
    assert iteration.status == S.GENERATING and len(sent) == 1
    response = staff.post(lifecycle_url(iteration, "launch"), follow=True)
    assert said(response) == ["Iteration 1 cannot launch from status generating."]
    assert "Iteration 1 cannot launch from status generating." in response.content.decode()
    assert said(staff.post(lifecycle_url(iteration, "cancel"), follow=True)) == ["Iteration 1: cancel done."]
    iteration.refresh_from_db()
    assert iteration.status == S.CANCELLED


def test_a_change_page_button_takes_only_a_post_of_a_known_action_on_an_iteration(staff):
    iteration = draft()
    assert staff.get(lifecycle_url(iteration, "launch")).status_code == 405
    assert staff.post(lifecycle_url(iteration, "explode")).status_code == 403
    assert staff.post(reverse("admin:webapp_iteration_lifecycle", args=[999999, "launch"])).status_code == 404
    iteration.refresh_from_db()
    assert iteration.status == S.DRAFT


def test_only_staff_with_the_change_permission_drive_iterations(client, alice, django_capture_on_commit_callbacks):
    iteration = draft()
    client.force_login(alice)  # a reviewer, not staff: sent to the admin's login page
    response = client.post(lifecycle_url(iteration, "launch"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert bulk(client, "launch", iteration).redirect_chain[0][0].startswith(reverse("admin:login"))
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_iteration"))
    client.force_login(viewer)  # staff who may only look
    assert client.post(lifecycle_url(iteration, "launch")).status_code == 403
    bulk(client, "launch", iteration)  # the list offers it no action: nothing runs
    page = client.get(admin_url("iteration", "change", iteration.pk)).content.decode()
    assert lifecycle_url(iteration, "launch") not in page
    iteration.refresh_from_db()
    assert iteration.status == S.DRAFT


def test_a_change_page_button_needs_the_csrf_token(bob):
    iteration = draft()
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    response = client.post(lifecycle_url(iteration, "launch"))
    assert response.status_code == 403 and b"CSRF verification failed" in response.content
    iteration.refresh_from_db()
    assert iteration.status == S.DRAFT
