"""The audit trail: every state-changing action, made through the real pages, the admin and the commands, leaves
one row naming who, when, from where and what; the rows cannot be changed or deleted, by the model or in SQL."""

import getpass
import io

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test import RequestFactory
from django.urls import reverse

from tests.factories import InstructionFactory, IterationFactory, UserFactory
from tests.review_data import reviewing_iteration
from tests.test_export_import import two_pair_iteration
from tests.test_transfer import upload
from webapp.accounts import audit
from webapp.accounts.actors import client_address
from webapp.jobs.imports import run_import
from webapp.models import AuditAction, AuditEvent, Iteration, IterationStatus, PreferencePair

pytestmark = pytest.mark.django_db
A = AuditAction
S = IterationStatus
COMMAND_LINE = f"command line ({getpass.getuser()})"


def events(*actions) -> list[tuple]:
    """(actor, action, iteration number, target) of the events with these actions, oldest first."""
    rows = AuditEvent.objects.filter(action__in=actions).order_by("created_at", "pk")
    return list(rows.values_list("actor", "action", "iteration", "target"))


def last(action) -> AuditEvent:
    return AuditEvent.objects.filter(action=action).latest("created_at", "pk")


@pytest.fixture
def staff(client, bob):
    client.force_login(bob)
    return client


def draft(number=1):
    iteration = IterationFactory(number=number)
    iteration.instructions.set(InstructionFactory.create_batch(2))
    return iteration


# --- iterations on the staff pages ---------------------------------------------------------------------------


def test_it_records_creating_launching_cancelling_resuming_and_approving_on_the_staff_pages(staff, bob):
    InstructionFactory.create_batch(2, source="coco")
    form = {"policy": "tiny-llava", "labeler": "tiny-llava", "splitter": "rule", "engine": "transformers",
            "source": "coco", "split": "train", "n": 4, "temperature": 0.7, "top_p": 1.0, "max_new_tokens": 32,
            "seed": 0, "pairs_per_instruction": 2, "beta": 0.1, "learning_rate": 5e-7, "epochs": 1}  # fmt: skip
    assert staff.post(reverse("iteration-new"), form).status_code == 302
    number = Iteration.objects.get().number
    for action in ("launch", "cancel", "resume"):
        assert staff.post(reverse("iteration-action", args=[number, action])).status_code == 302
    gate = IterationFactory(number=number + 1, status=S.REVIEWING)
    staff.post(reverse("iteration-action", args=[gate.number, "approve"]))
    staff.post(reverse("iteration-action", args=[gate.number, "approve"]))  # refused: already training

    assert events(A.CREATE, A.LAUNCH, A.CANCEL, A.RESUME, A.APPROVE) == [
        ("bob", A.CREATE, number, f"Iteration {number}"),
        ("bob", A.LAUNCH, number, f"Iteration {number}"),
        ("bob", A.CANCEL, number, f"Iteration {number}"),
        ("bob", A.RESUME, number, f"Iteration {number}"),
        ("bob", A.APPROVE, gate.number, f"Iteration {gate.number}"),
    ]
    created = last(A.CREATE)
    assert (created.user, created.address) == (bob, "127.0.0.1")
    assert created.details == {"status": "draft", "policy": "tiny-llava", "labeler": "tiny-llava", "instructions": 2}
    assert last(A.CANCEL).details == {"stage": "generating"}
    assert last(A.RESUME).details == {"stage": "generating", "was": "cancelled"}


def test_an_action_that_fails_records_nothing(staff):
    empty = IterationFactory()  # no instructions: launch refuses
    staff.post(reverse("iteration-action", args=[empty.number, "launch"]))
    staff.post(reverse("iteration-action", args=[empty.number, "cancel"]))  # a draft cannot be cancelled
    assert not AuditEvent.objects.filter(iteration=empty.number).exists()


# --- iterations in the admin ---------------------------------------------------------------------------------


def admin_url(model, view, *args, app="webapp"):
    return reverse(f"admin:{app}_{model}_{view}", args=args)


def test_it_records_the_admins_lifecycle_buttons_bulk_actions_draft_edits_and_deletions(staff):
    first, second, third = draft(1), draft(2), draft(3)
    staff.post(reverse("admin:webapp_iteration_lifecycle", args=[first.pk, "launch"]))
    staff.post(admin_url("iteration", "changelist"), {"action": "cancel", "_selected_action": [first.pk]})
    form = {"policy": "small-llava", "labeler": "tiny-llava", "splitter": "rule", "engine": "transformers",
            "config": '{"n": 6}'}  # fmt: skip
    assert staff.post(admin_url("iteration", "change", second.pk), form).status_code == 302
    staff.post(admin_url("iteration", "delete", third.pk), {"post": "yes"})

    assert events(A.LAUNCH, A.CANCEL, A.EDIT, A.DELETE) == [
        ("bob", A.LAUNCH, 1, "Iteration 1"),
        ("bob", A.CANCEL, 1, "Iteration 1"),
        ("bob", A.EDIT, 2, "Iteration 2"),
        ("bob", A.DELETE, 3, "Iteration 3"),
    ]
    assert last(A.EDIT).details == {"changes": {"policy": ["tiny-llava", "small-llava"], "config": [{}, {"n": 6}]}}
    assert not Iteration.objects.filter(number=3).exists()


# --- commands, imports, exports -------------------------------------------------------------------------------


def test_commands_are_recorded_as_the_command_line_with_its_os_user(media_root, tmp_path):
    InstructionFactory.create_batch(2)
    out = io.StringIO()
    call_command("run_iteration", "--new", "--policy", "tiny-llava", "--labeler", "tiny-llava", stdout=out)
    gate = IterationFactory(number=2, status=S.REVIEWING)
    call_command("run_iteration", "--iteration", str(gate.number), "--approve", stdout=out)
    assert events(A.CREATE, A.LAUNCH, A.APPROVE) == [
        (COMMAND_LINE, A.CREATE, 1, "Iteration 1"),
        (COMMAND_LINE, A.LAUNCH, 1, "Iteration 1"),
        (COMMAND_LINE, A.APPROVE, gate.number, f"Iteration {gate.number}"),
    ]
    assert {(e.user, e.address) for e in AuditEvent.objects.all()} == {(None, None)}


def test_the_import_and_export_commands_are_recorded(media_root, tmp_path):
    from tests.test_export_import import export, import_rlaifv
    from tests.test_importing import png_bytes

    iteration = two_pair_iteration()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "red.png").write_bytes(png_bytes())
    (tmp_path / "data.jsonl").write_text('{"image": "red.png", "question": "What color is it?"}\n')
    call_command("import_instructions", str(tmp_path / "data.jsonl"), "--images", str(tmp_path / "images"))
    export("rlaifv", tmp_path / "pairs.parquet")
    import_rlaifv(tmp_path / "pairs.parquet", "--source", "again")

    imported = Iteration.objects.get(number=2)
    assert events(A.IMPORT, A.EXPORT, A.IMPORT_RLAIFV, A.CREATE) == [
        (COMMAND_LINE, A.IMPORT, None, str(tmp_path / "data.jsonl")),
        (COMMAND_LINE, A.EXPORT, iteration.number, str(tmp_path / "pairs.parquet")),
        (COMMAND_LINE, A.CREATE, imported.number, str(imported)),
        (COMMAND_LINE, A.IMPORT_RLAIFV, imported.number, str(tmp_path / "pairs.parquet")),
    ]
    assert last(A.IMPORT).details == {"created": 1, "skipped": 0, "source": "user"}
    assert last(A.EXPORT).details == {"format": "rlaifv", "pairs": 2}
    assert last(A.IMPORT_RLAIFV).details | {"sha256": ""} == {
        "sha256": "", "created": 2, "existing": 0, "pairs": 2
    }  # fmt: skip


def test_a_browser_upload_and_its_import_by_the_worker_are_recorded(
    client, bob, media_root, django_capture_on_commit_callbacks
):
    client.force_login(bob)
    made = upload(client, django_capture_on_commit_callbacks)
    run_import(made.pk, worker="test")
    assert events(A.UPLOAD, A.IMPORT) == [
        ("bob", A.UPLOAD, None, str(made)),
        ("bob", A.IMPORT, None, f"{made} (data.jsonl)"),
    ]
    uploaded, imported = last(A.UPLOAD), last(A.IMPORT)
    assert (uploaded.user, uploaded.address) == (bob, "127.0.0.1")
    assert uploaded.details == {"jsonl": "data.jsonl", "images": "images.zip", "source": "web"}
    assert (imported.user, imported.address, imported.details) == (
        bob, None, {"created": 2, "skipped": 0, "source": "web"}
    )  # fmt: skip


def test_a_failed_import_records_no_import(client, bob, media_root, django_capture_on_commit_callbacks):
    client.force_login(bob)
    made = upload(client, django_capture_on_commit_callbacks, lines=["{not json"])
    run_import(made.pk, worker="test")
    assert events(A.UPLOAD, A.IMPORT) == [("bob", A.UPLOAD, None, str(made))]


def test_a_download_is_recorded_and_a_refused_one_is_not(staff, media_root):
    iteration = two_pair_iteration()
    response = staff.get(reverse("iteration-export", args=[iteration.number, "trl"]))
    b"".join(response.streaming_content)
    empty = IterationFactory(number=2)
    staff.get(reverse("iteration-export", args=[empty.number, "trl"]))  # no pairs: refused
    assert events(A.EXPORT) == [("bob", A.EXPORT, iteration.number, "iteration-1-trl.parquet")]
    assert last(A.EXPORT).details == {"format": "trl"}


# --- pair exclusions -----------------------------------------------------------------------------------------


def test_excluding_and_including_a_pair_is_recorded(client, alice):
    iteration = reviewing_iteration([[0.9], [0.1]])
    pair = PreferencePair.objects.get(iteration=iteration)
    url = reverse("review-pair", args=[iteration.number, pair.chosen_id, pair.rejected_id])
    client.force_login(alice)
    client.post(url, {"exclude": "1"})
    client.post(url, {"exclude": "0"})
    assert events(A.EXCLUDE, A.INCLUDE) == [
        ("alice", A.EXCLUDE, iteration.number, f"pair {pair.pk}"),
        ("alice", A.INCLUDE, iteration.number, f"pair {pair.pk}"),
    ]
    assert last(A.EXCLUDE).details == {"chosen": pair.chosen_id, "rejected": pair.rejected_id}
    assert last(A.EXCLUDE).address == "127.0.0.1"


def test_an_exclusion_refused_at_a_closed_gate_records_nothing(client, alice):
    iteration = reviewing_iteration([[0.9], [0.1]])
    pair = PreferencePair.objects.get(iteration=iteration)
    Iteration.objects.filter(pk=iteration.pk).update(status=S.TRAINING)
    client.force_login(alice)
    url = reverse("review-pair", args=[iteration.number, pair.chosen_id, pair.rejected_id])
    assert client.post(url, {"exclude": "1"}).status_code == 409
    assert events(A.EXCLUDE) == []


# --- users and groups ----------------------------------------------------------------------------------------


def test_user_and_group_changes_in_the_admin_are_recorded(staff, bob):
    response = staff.post(
        admin_url("user", "add", app="auth"),
        {"username": "dave", "usable_password": "true", "password1": "a long pass phrase 42",
         "password2": "a long pass phrase 42"},
    )  # fmt: skip
    assert response.status_code == 302
    dave = UserFactory._meta.model.objects.get(username="dave")
    staff.post(admin_url("group", "add", app="auth"), {"name": "reviewer"})
    group = Group.objects.get(name="reviewer")
    change = {"username": "dave", "is_active": "on", "is_staff": "on", "groups": [group.pk],
              "date_joined_0": "2025-01-02", "date_joined_1": "03:04:05"}  # fmt: skip
    assert staff.post(admin_url("user", "change", dave.pk, app="auth"), change).status_code == 302
    staff.post(admin_url("group", "change", group.pk, app="auth"), {"name": "reviewers"})
    staff.post(admin_url("user", "delete", dave.pk, app="auth"), {"post": "yes"})
    staff.post(admin_url("group", "delete", group.pk, app="auth"), {"post": "yes"})

    users_and_groups = [A.ADD_USER, A.CHANGE_USER, A.DELETE_USER, A.ADD_GROUP, A.CHANGE_GROUP, A.DELETE_GROUP]
    recorded = [row for row in events(*users_and_groups) if row[0] == "bob"]
    assert recorded == [
        ("bob", A.ADD_USER, None, "user dave"),
        ("bob", A.ADD_GROUP, None, "group reviewer"),
        ("bob", A.CHANGE_USER, None, "user dave"),
        ("bob", A.CHANGE_USER, None, "user dave"),
        ("bob", A.CHANGE_GROUP, None, "group reviewers"),
        ("bob", A.DELETE_USER, None, "user dave"),
        ("bob", A.DELETE_GROUP, None, "group reviewers"),
    ]
    changes = [e.details for e in AuditEvent.objects.filter(action=A.CHANGE_USER, actor="bob").order_by("pk")]
    assert changes[0]["changes"]["is_staff"] == [False, True]
    assert changes[1] == {"groups": {"added": ["reviewer"]}}
    assert last(A.CHANGE_GROUP).details == {"changes": {"name": ["reviewer", "reviewers"]}}


def test_a_password_change_is_recorded_without_the_hash_and_a_login_is_not(client, charlie):
    charlie.set_password("another long pass phrase")
    charlie.save()
    # Through the login page: the lockout backend takes only logins that come with their request.
    response = client.post("/login/", {"username": "charlie", "password": "another long pass phrase"})
    assert response.status_code == 302 and "_auth_user_id" in client.session
    assert last(A.CHANGE_USER).details == {"changes": {"password": "changed"}}
    assert AuditEvent.objects.filter(action=A.CHANGE_USER).count() == 1


def test_membership_changed_from_either_side_or_cleared_is_recorded_on_the_user(charlie):
    group = Group.objects.create(name="auditors")
    group.user_set.add(charlie)
    charlie.groups.clear()
    assert [e.details for e in AuditEvent.objects.filter(action=A.CHANGE_USER).order_by("pk")] == [
        {"groups": {"added": ["auditors"]}},
        {"groups": {"removed": ["auditors"]}},
    ]
    assert last(A.CHANGE_USER).actor == COMMAND_LINE


# --- from where: the client's address -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "proxies, forwarded, expected",
    [
        (0, "203.0.113.9", "10.0.0.1"),  # no proxy configured: the header is anyone's claim, ignored
        (1, "198.51.100.7, 203.0.113.9", "203.0.113.9"),  # the client wrote the first entry, the proxy the last
        (2, "198.51.100.7, 203.0.113.9, 10.0.0.2", "203.0.113.9"),
        (2, "203.0.113.9", "203.0.113.9"),  # fewer entries than proxies: the leftmost a proxy wrote
        (1, "", "10.0.0.1"),
        (1, "not an address", None),
    ],
)
def test_the_client_address_honours_x_forwarded_for_only_as_configured(settings, proxies, forwarded, expected):
    settings.FORWARDED_FOR_PROXIES = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected


def test_an_action_records_the_address_the_proxy_saw(staff, settings):
    settings.FORWARDED_FOR_PROXIES = 1
    iteration = draft()
    staff.post(
        reverse("iteration-action", args=[iteration.number, "launch"]),
        headers={"X-Forwarded-For": "192.0.2.1, 203.0.113.9"},
    )
    assert last(A.LAUNCH).address == "203.0.113.9"


def test_the_trail_reads_the_proxys_address_header_as_the_lockout_does(staff, settings):
    """Found by an attack: behind compose's nginx (X-Real-IP) the trail's address was empty while the lockout read
    the header; both now follow one rule (webapp.accounts.actors.client_address)."""
    settings.CLIENT_ADDRESS_HEADER = "X-Real-IP"
    iteration = draft()
    staff.post(reverse("iteration-action", args=[iteration.number, "launch"]), headers={"X-Real-IP": "203.0.113.5"})
    assert last(A.LAUNCH).address == "203.0.113.5"
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_REAL_IP="a, b")
    assert client_address(request) == "10.0.0.1"  # not one address: not the proxy's


# --- append-only -----------------------------------------------------------------------------------------------


def test_the_model_refuses_to_change_or_delete_an_event():
    event = audit.record(A.EXPORT, target="x")
    event.target = "y"
    for attempt in (event.save, event.delete, AuditEvent.objects.all().delete,
                    lambda: AuditEvent.objects.update(target="y"),
                    lambda: AuditEvent.objects.bulk_update([event], ["target"])):  # fmt: skip
        with pytest.raises(TypeError, match="append-only"), transaction.atomic():
            attempt()
    assert AuditEvent.objects.get().target == "x"


@pytest.mark.parametrize("sql", ["UPDATE webapp_auditevent SET target = 'y'", "DELETE FROM webapp_auditevent"])
def test_the_database_refuses_to_change_or_delete_an_event(sql):
    audit.record(A.EXPORT, target="x")
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert list(AuditEvent.objects.values_list("target", flat=True)) == ["x"]


def test_a_user_who_acted_cannot_be_deleted_so_the_trail_keeps_naming_them(staff, bob):
    from django.db.models import ProtectedError

    draft()
    staff.post(reverse("iteration-action", args=[1, "launch"]))
    with pytest.raises(ProtectedError):
        bob.delete()


def test_flush_empties_the_trail_and_leaves_it_guarded(transactional_db):
    audit.record(A.EXPORT, target="x")
    call_command("flush", interactive=False, verbosity=0)
    assert not AuditEvent.objects.exists()
    audit.record(A.EXPORT, target="x")
    with pytest.raises(IntegrityError, match="append-only"), connection.cursor() as cursor:
        cursor.execute("DELETE FROM webapp_auditevent")


# --- where it is shown ---------------------------------------------------------------------------------------


def test_the_iteration_page_shows_its_last_events_who_did_what_when(client, alice, bob):
    draft(number=1)
    client.force_login(bob)
    for action in ["launch"] + ["cancel", "resume"] * 5:
        client.post(reverse("iteration-action", args=[1, action]))
    client.force_login(alice)
    page = client.get(reverse("iteration", args=[1])).content.decode()
    assert page.count('data-action="cancel"') == 5 and page.count('data-action="resume"') == 5
    assert 'data-action="launch"' not in page  # the last ten only
    assert "<td>bob</td>" in page and "cancelled" in page and "stage: generating" in page
    assert reverse("admin:webapp_auditevent_changelist") not in page  # the whole trail is staff's
    client.force_login(bob)
    assert (
        reverse("admin:webapp_auditevent_changelist") + "?iteration=1"
        in client.get(reverse("iteration", args=[1])).content.decode()
    )


def test_events_of_a_deleted_iteration_do_not_show_on_its_namesake(staff):
    old = draft(number=1)
    staff.post(reverse("iteration-action", args=[1, "launch"]))
    Iteration.objects.filter(pk=old.pk).delete()
    draft(number=1)
    page = staff.get(reverse("iteration", args=[1])).content.decode()
    assert 'data-action="launch"' not in page and AuditEvent.objects.filter(iteration=1).count() == 1


def test_the_admin_lists_the_trail_read_only_with_filters(staff, bob):
    draft()
    staff.post(reverse("iteration-action", args=[1, "launch"]))
    event = last(A.LAUNCH)
    listing = staff.get(admin_url("auditevent", "changelist"))
    assert listing.status_code == 200
    assert [spec.title for spec in listing.context["cl"].filter_specs] == ["action", "user", "created at"]
    assert admin_url("auditevent", "add") not in listing.content.decode()
    assert (
        staff.get(admin_url("auditevent", "changelist"), {"action__exact": "launch", "iteration": 1})
        .context["cl"]
        .result_count
        == 1
    )
    page = staff.get(admin_url("auditevent", "change", event.pk))
    assert page.status_code == 200 and not page.context["has_change_permission"]
    assert staff.post(admin_url("auditevent", "change", event.pk), {"target": "forged"}).status_code == 403
    assert staff.get(admin_url("auditevent", "add")).status_code == 403
    assert staff.post(admin_url("auditevent", "delete", event.pk), {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.get(pk=event.pk).target == "Iteration 1"


# --- reviews: their own trail, in no one else's name ----------------------------------------------------------


def test_a_posted_reviewer_field_is_ignored_the_reviewer_is_the_signed_in_user(client, alice, bob):
    from webapp.models import Claim, Review

    iteration = reviewing_iteration([[0.9], [0.1]])
    pair = PreferencePair.objects.get(iteration=iteration)
    claim = Claim.objects.filter(response=pair.rejected_id).first()
    client.force_login(alice)
    url = reverse("review-pair", args=[iteration.number, pair.chosen_id, pair.rejected_id])
    client.post(url, {"correct": claim.pk, "reviewer": bob.pk, "reviewer_id": bob.pk})
    queue = reverse("review-queue", args=[iteration.number])
    client.post(queue, {"hallucinated": claim.pk, "reviewer": bob.pk, "reviewer_id": bob.pk})
    mine = Review.objects.get(decision="hallucinated")
    client.post(url, {"undo": mine.pk, "reviewer": bob.pk})
    assert list(Review.objects.order_by("pk").values_list("reviewer__username", "decision")) == [
        ("alice", "correct"),
        ("alice", "hallucinated"),
        ("alice", "undo"),
    ]
