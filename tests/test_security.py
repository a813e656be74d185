"""Security: one test (or a small group) per class of hole that annotation tools like this one have shipped.

Each test runs the attack against the real app (the Django test client, the real database, the real import
commands and model loaders) and shows that it fails:

1. Stored XSS: untrusted text (questions, sources and file names from imports, model answers and claims,
   review notes, worker errors, model names) is escaped on every page that shows it. The Content-Security-
   Policy (tests/test_production.py) is the second line of defence; these tests check the first.
2. Broken access control (IDOR): every URL pattern, walked from the resolver so that a new one is covered
   without editing this file, needs a login; users outside the reviewer group get nothing, reviewers get no
   staff action, and every id in an object URL that points nowhere is a 404. All reviewers see all
   iterations (README), so "someone else's object" means an object of another iteration or pair.
3. Filtering and sorting on arbitrary fields: the pair list reads its query string through an allow-list
   form, never into ORM lookups (no `?sort=reviewer__password` oracle).
4. CSRF: every URL refuses a POST without the token; the real POST endpoints work with it.
5. Content sniffing: only images get in (validated by content), and they are served with a fixed image type
   and nosniff, so an HTML or SVG payload is never rendered by the browser.
6. SSRF: the server never fetches a URL taken from user input (import image paths, model names).
7. Pickle: model weights load from safetensors only; a pytorch_model.bin that runs code is never opened.

Cases already covered elsewhere are not repeated: ids of another iteration (tests/test_review_views.py),
import validation of broken and oversized images (tests/test_importing.py), the security headers on every
response (tests/test_production.py).
"""

import http.server
import io
import json
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLResolver, get_resolver, resolve, reverse
from django.utils.html import escape
from PIL import Image

from labeling.backends.base import Sampling
from labeling.formats import RlaifvRecord, write_rlaifv
from tests.factories import IterationFactory, JobFactory, PreferencePairFactory, UserFactory
from tests.review_data import reviewing_iteration
from tests.test_review_views import HTMX, answer, claim, pair_url, press, queue_url
from webapp.jobs.engines import ModelLoadError, backend_for, reward_models
from webapp.models import (
    Claim,
    Instruction,
    InstructionImport,
    Iteration,
    IterationStatus,
    JobState,
    PreferencePair,
    Response,
    Review,
)

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"  # tests/factories.py


def png_bytes(size=(8, 8), color=(200, 30, 30), fmt="PNG"):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def iteration():
    """At its review gate: answer 0 (score 0) is chosen over answer 1 (score −1)."""
    return reviewing_iteration([[0.9, 0.8], [0.9, 0.45]])


# --- 1. stored XSS ------------------------------------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=alert(1)>'
LIVE = re.compile(r"<script>alert|<img src=x", re.I)


def payload(field: str) -> str:
    """Text for one field that runs script if a page shows it unescaped."""
    return f"{field} {SCRIPT} {BREAKOUT}"


def assert_escaped(response, *texts, status=200):
    """Every text is on the page, escaped, and nothing on the page is live markup from a payload."""
    assert response.status_code == status
    html = response.content.decode()
    assert not LIVE.search(html), LIVE.search(html)
    for text in texts:
        assert text not in html
        assert escape(text) in html, f"{text!r} is not shown (escaped) on {response.request['PATH_INFO']}"


def test_model_and_reviewer_text_is_escaped_on_every_page(client, alice, iteration):
    """(a) the question and its source, (b) the answers and their claims, (d) a review note."""
    Instruction.objects.filter(iterations=iteration).update(question=payload("question"), source=payload("source"))
    Response.objects.filter(iteration=iteration).update(text=payload("answer"))
    Claim.objects.filter(response__iteration=iteration).update(
        text=payload("claim"), question=payload("claim question")
    )
    answers = [payload("answer"), payload("claim"), payload("claim question")]
    client.force_login(alice)
    # The pair page's form posts no note, but the endpoint stores one and the claim history shows it.
    fragment = client.post(pair_url(iteration), {"unsure": claim(iteration, 0).pk, "note": payload("note")}, **HTMX)
    assert Review.objects.get().note == payload("note")
    # The HTMX answer carries the decided claim's chip, not the answers' texts.
    assert_escaped(fragment, payload("claim"), payload("claim question"), payload("note"))
    assert_escaped(client.get(pair_url(iteration)), payload("question"), payload("source"), *answers, payload("note"))
    for response in [client.get(reverse("review-pairs")), client.get(reverse("review-pairs"), **HTMX)]:
        assert_escaped(response, payload("question"), payload("source"))
    for response in [client.get(queue_url(iteration)), client.get(queue_url(iteration), **HTMX)]:
        assert_escaped(response, payload("question"), *answers)
    assert_escaped(client.post(queue_url(iteration), press("unsure", claim(iteration, 1, 1)), **HTMX), *answers)
    assert_escaped(client.get(reverse("home")), payload("source"))


def test_iteration_text_is_escaped_on_the_iteration_pages_and_the_dashboard(client, alice, bob, iteration):
    """Model names (typed by staff), and what workers write back: the error, the checkpoint path."""
    client.force_login(bob)
    form = {"policy": payload("policy"), "labeler": payload("labeler"), "splitter": payload("splitter"),
            "engine": "transformers", "split": "train", "n": 4, "temperature": 0.7, "top_p": 1.0,
            "max_new_tokens": 32, "seed": 0, "pairs_per_instruction": 2, "beta": 0.1, "learning_rate": 5e-7,
            "epochs": 1}  # fmt: skip
    refused = client.post(reverse("iteration-new"), form)  # no such model is installed: shown back, escaped
    assert_escaped(refused, payload("policy"))
    # Names that reached the database anyway (an import, a shell) are escaped wherever they are shown.
    new = IterationFactory(policy=payload("policy"), labeler=payload("labeler"), splitter=payload("splitter"))
    Iteration.objects.filter(pk=new.pk).update(
        status=IterationStatus.FAILED, error=payload("error"), checkpoint=payload("checkpoint")
    )
    JobFactory(iteration=new, state=JobState.FAILED, error=payload("job error"))  # not shown; LIVE would catch it
    names = [payload("policy"), payload("labeler")]
    for user in (alice, bob):
        client.force_login(user)
        assert_escaped(client.get(reverse("iterations")), *names, payload("checkpoint"))
        detail = client.get(reverse("iteration", args=[new.number]))
        assert_escaped(detail, *names, payload("splitter"), payload("checkpoint"), payload("error"))
        # The progress fragment a running iteration polls (286: a failed one stops the polling).
        assert_escaped(client.get(reverse("iteration", args=[new.number]), **HTMX), payload("error"), status=286)
        assert_escaped(client.get(reverse("home")), payload("error"))


def test_imported_text_is_escaped(client, alice, media_root, tmp_path):
    """(c) the real import paths: a JSONL file of instructions, and an RLAIF-V parquet file of pairs whose
    answers, dataset name and very file name (it becomes the iteration's policy) carry payloads."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png_bytes())
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text(json.dumps({"image": "a.png", "question": payload("jsonl question"), "source": payload("jsonl")}))
    call_command("import_instructions", str(jsonl), "--images", str(tmp_path / "images"))
    parquet = tmp_path / f"pairs {BREAKOUT}.parquet"
    record = RlaifvRecord(
        png_bytes(color=(0, 0, 255)),
        payload("rlaifv question"),
        chosen=payload("chosen"),
        rejected=payload("rejected"),
        origin_dataset=payload("dataset"),
    )
    write_rlaifv([record], parquet)
    call_command("import_rlaifv", str(parquet))
    imported = Iteration.objects.get()
    # The JSONL instruction joins the imported iteration, so its question shows on the review pages too.
    jsonl_pair = PreferencePairFactory(iteration=imported, instruction=Instruction.objects.get(source=payload("jsonl")))
    rlaifv_pair = PreferencePair.objects.exclude(pk=jsonl_pair.pk).get()

    client.force_login(alice)
    questions = [payload("jsonl question"), payload("rlaifv question")]
    assert_escaped(client.get(reverse("review-pairs")), *questions, payload("jsonl"), payload("dataset"))
    page = client.get(reverse("review-pair", args=[imported.number, rlaifv_pair.chosen_id, rlaifv_pair.rejected_id]))
    assert_escaped(page, payload("rlaifv question"), payload("dataset"), payload("chosen"), payload("rejected"))
    page = client.get(reverse("review-pair", args=[imported.number, jsonl_pair.chosen_id, jsonl_pair.rejected_id]))
    assert_escaped(page, payload("jsonl question"), payload("jsonl"))
    assert_escaped(client.get(reverse("home")), payload("jsonl"), payload("dataset"))
    assert_escaped(client.get(reverse("iterations")), f"imported:{parquet.name}")
    assert_escaped(client.get(reverse("iteration", args=[imported.number])), f"imported:{parquet.name}")


def test_query_strings_and_posted_values_are_escaped_where_pages_echo_them(client, bob, iteration):
    """Reflected XSS: the login page's `next`, the pair list's filters (and its paging links), and a refused
    iteration form, which puts the posted model names back into its inputs' value attributes."""
    assert_escaped(client.get(reverse("login"), {"next": payload("next")}), payload("next"))
    client.force_login(bob)
    assert_escaped(client.get(reverse("review-pairs"), {"q": payload("search")}), payload("search"))
    form = {"policy": payload("policy"), "labeler": payload("labeler"), "splitter": "rule", "n": 1}
    response = client.post(reverse("iteration-new"), form)
    assert_escaped(response, payload("policy"), payload("labeler"))
    assert Iteration.objects.count() == 1


# --- 2. access control on every URL -------------------------------------------------------------------------

# Who may use each URL: anyone, any logged-in user, reviewers (and staff), or staff. The admin's URLs are all
# staff's. A new URL name must be added here (test_every_url_is_classified), which decides what the walks
# below expect of it.
ACCESS = {
    "login": "public",
    "admin:login": "public",
    "logout": "user",
    "admin:logout": "user",
    "home": "user",  # outsiders see it read-only (tests/test_dashboard.py)
    "review-pairs": "reviewer",
    "review-pair": "reviewer",
    "review-queue": "reviewer",
    "review-audit": "reviewer",
    "review-audit-start": "staff",
    "iteration-calibration": "reviewer",
    "iteration-margin": "staff",
    "instruction-image": "reviewer",
    "iterations": "reviewer",
    "iteration": "reviewer",
    "iteration-new": "staff",
    "iteration-action": "staff",
    "iteration-export": "staff",
    "imports": "staff",
    "import": "staff",
}
LOGIN_PAGES = {"/login/", "/admin/login/"}
POST_ONLY = {"iteration-action", "logout", "review-audit-start", "iteration-margin"}
# A value for each URL argument that names nothing. An iteration's action is one of four words: any other
# matches no URL at all (tests/test_iteration_views.py), so it has no entry here.
MISSING = {"number": "999999", "left": "999999", "right": "999998", "shard": "zz", "name": "0" * 64 + ".png"}
MISSING |= {"fmt": "csv", "pk": "999999"}
_ARGUMENT = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>[^)]*\)")


def _patterns(patterns, prefix="", namespace=None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _patterns(pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace)
        else:
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            yield name, prefix + str(pattern.pattern), pattern.callback


def every_url(values: dict):
    """(name, access, path, arguments) for every URL pattern of the project, its arguments filled from `values`."""
    for name, route, callback in _patterns(get_resolver().url_patterns):
        arguments = [a or b for a, b in _ARGUMENT.findall(route)]
        missing = [a for a in arguments if a not in values]
        assert not missing, f"{route}: give its arguments {missing} a value in real_ids and in MISSING"
        path = "/" + _ARGUMENT.sub(lambda m: str(values[m[1] or m[2]]), route).replace("^", "").replace("$", "")
        assert resolve(path).func == callback, f"{route}: the sample path {path} resolves elsewhere"
        if path.startswith("/static/"):
            access = "public"
        elif name in ACCESS:
            access = ACCESS[name]
        else:
            access = "staff" if path.startswith("/admin/") else None
        yield name or route, access, path, arguments


def path_of(name, values):
    return next(path for n, _, path, _ in every_url(values) if n == name)


@pytest.fixture
def real_ids(iteration, media_root, alice):
    """URL arguments naming real objects: the pair under review, its stored image, an instruction."""
    instruction = iteration.instructions.get()
    image = Path(media_root) / instruction.image.name
    image.parent.mkdir(parents=True)
    image.write_bytes(png_bytes())
    _, shard, name = instruction.image.name.split("/")
    return {
        "number": iteration.number,
        "left": answer(iteration, 0).pk,
        "right": answer(iteration, 1).pk,
        "shard": shard,
        "name": name,
        "action": "approve",
        "fmt": "trl",
        "pk": InstructionImport.objects.create(jsonl="imports/a.jsonl", images="imports/a.zip").pk,
        "object_id": instruction.pk,
        "content_type_id": ContentType.objects.get_for_model(Instruction).pk,
        "id": alice.pk,
        "app_label": "webapp",
        "url": "nowhere/",
        "path": "webapp/app.css",
    }


def nothing_changed(iteration):
    iteration.refresh_from_db()
    assert iteration.status == IterationStatus.REVIEWING
    assert not Review.objects.exists() and not PreferencePair.objects.filter(excluded=True).exists()
    assert Iteration.objects.count() == 1


def test_every_url_is_classified(real_ids):
    unclassified = [name for name, access, *_ in every_url(real_ids) if access is None]
    assert unclassified == [], "add these URL names to ACCESS"


def test_anonymous_visitors_are_sent_to_log_in_from_every_url(client, iteration, real_ids):
    for name, access, path, _ in every_url(real_ids):
        if access == "public":
            continue
        for response in [client.get(path), client.post(path, press("hallucinated", claim(iteration, 0)))]:
            assert response.status_code == 302, (name, path, response.status_code)
            assert urlsplit(response["Location"]).path in LOGIN_PAGES, (name, path)
    nothing_changed(iteration)


def assert_refused(name, path, response):
    """403 from the app (405 for a GET on a POST-only URL); the admin sends non-staff to its login page."""
    if path.startswith("/admin/"):
        assert response.status_code == 302 and urlsplit(response["Location"]).path == "/admin/login/", (name, path)
    else:
        assert response.status_code in (403, 405), (name, path, response.status_code)
        assert response.status_code == 403 or (response.request["REQUEST_METHOD"] == "GET" and name in POST_ONLY)


def test_users_outside_the_reviewer_group_get_nothing(client, charlie, iteration, real_ids):
    """Logged in, but not a reviewer: refused on every page but logout, however real the ids (images too)."""
    client.force_login(charlie)
    for name, access, path, _ in every_url(real_ids):
        if access in ("reviewer", "staff"):
            assert_refused(name, path, client.get(path))
            assert_refused(name, path, client.post(path, press("hallucinated", claim(iteration, 0))))
            assert_refused(name, path, client.post(path, {"exclude": "1"}))
    nothing_changed(iteration)


def test_reviewers_see_the_review_pages_but_get_no_staff_action(client, alice, iteration, real_ids):
    client.force_login(alice)
    for name, access, path, _ in every_url(real_ids):
        if access == "reviewer":
            # The same ids are real: a 403 above is the access rule, not a missing object.
            assert client.get(path).status_code == 200, (name, path)
        if access == "staff":
            assert_refused(name, path, client.get(path))
            assert_refused(name, path, client.post(path, {"policy": "tiny-llava", "labeler": "tiny-llava"}))
    nothing_changed(iteration)


def test_every_id_of_every_object_url_that_names_nothing_is_not_found(client, bob, iteration, real_ids):
    """Staff, who may see everything, get a 404 (never the object of another id) for each id alone pointing
    nowhere: the iteration, either answer of the pair, the image, the iteration of a progress fragment."""
    client.force_login(bob)
    checked = set()
    for name, access, path, arguments in every_url(real_ids):
        if access not in ("reviewer", "staff") or path.startswith("/admin/"):
            continue  # the admin's own 404s are Django's
        for argument in [a for a in arguments if a in MISSING]:
            missing_path = path_of(name, real_ids | {argument: MISSING[argument]})
            checked.add((name, argument))
            for response in [client.get(missing_path), client.get(missing_path, **HTMX), client.post(missing_path)]:
                expected = {404}
                if name in POST_ONLY and response.request["REQUEST_METHOD"] == "GET":
                    expected = {405}
                assert response.status_code in expected, (name, missing_path, response.status_code)
    object_urls = {"review-pair", "review-queue", "iteration", "iteration-action", "instruction-image"}
    object_urls |= {"iteration-export", "import"}
    assert object_urls <= {name for name, _ in checked}
    nothing_changed(iteration)


def test_a_decision_reaches_only_a_claim_or_pair_of_the_url(client, alice, media_root):
    """With a real pair in the URL, an id of something else of the same iteration is still a 404: another
    instruction's claim, a claim that does not exist, two answers that are not a pair (a tie). Other
    iterations' ids: tests/test_review_views.py."""
    iteration = reviewing_iteration([[0.9], [0.9], [0.2]], [[0.9], [0.2]])  # answers 0 and 1 of the first tie
    first, second = iteration.instructions.order_by("pk")
    other_claim = Claim.objects.filter(response__instruction=second).first()
    left, right, worse = Response.objects.filter(instruction=first).order_by("seed")
    client.force_login(alice)
    pair = reverse("review-pair", args=[iteration.number, left.pk, worse.pk])
    tie = reverse("review-pair", args=[iteration.number, left.pk, right.pk])
    not_found = [
        (pair, {"hallucinated": other_claim.pk}),
        (pair, {"hallucinated": 999999}),
        (queue_url(iteration), {"hallucinated": 999999}),
        (tie, {"exclude": "1"}),
    ]
    for url, form in not_found:
        assert client.post(url, form).status_code == 404, (url, form)
    assert not Review.objects.exists() and not PreferencePair.objects.filter(excluded=True).exists()


def test_only_the_images_of_instructions_are_served(client, alice, media_root):
    """A file under MEDIA_ROOT that no instruction names, and paths that climb out of the images folder."""
    (Path(media_root) / "images" / "ab").mkdir(parents=True)
    (Path(media_root) / "images" / "ab" / "stray.png").write_bytes(png_bytes())
    (Path(media_root) / "secret.png").write_bytes(png_bytes())
    instruction_row("images/ab/real.png")
    client.force_login(alice)
    for url in ["/media/images/ab/stray.png", "/media/images/../secret.png", "/media/images/ab/..%2Fsecret.png",
                "/media/images/ab/%2e%2e%2f%2e%2e%2fsecret.png", "/media/images/ab/real.png/"]:  # fmt: skip
        assert client.get(url).status_code == 404, url


# --- 3. filtering and sorting only through the allow-list ---------------------------------------------------

ATTACKS = [
    {"sort": "excluded_by__password"},
    {"sort": "-excluded_by__password"},
    {"sort": "-chosen__claims__reviews__reviewer__password"},
    {"order": "excluded_by__password"},
    {"ordering": "-excluded_by__password"},
    {"o": "excluded_by__password"},
    {"excluded_by__password__startswith": "a"},
    {"excluded_by__password": "a-hash"},
    {"chosen__claims__reviews__reviewer__password__startswith": "pbkdf2"},
    {"instruction__question__icontains": "no such question"},
    {"after": "1.1) OR (1=1"},
    {"min_gap": "1 OR 1=1"},
]


@pytest.mark.parametrize("params", ATTACKS, ids=lambda params: "&".join(f"{k}={v}" for k, v in params.items()))
def test_the_pair_list_never_sorts_or_filters_on_fields_outside_its_form(client, alice, params):
    iteration = reviewing_iteration([[0.9] * 3, [0.2] * 3], [[0.9] * 2, [0.2] * 2], [[0.9], [0.2]])  # gaps 3, 2, 1
    default = list(PreferencePair.objects.filter(iteration=iteration).order_by("-score_gap"))
    # One user excluded each pair; their passwords sort neither like the default order nor like its reverse.
    for pair, secret in zip(default, ["b-hash", "c-hash", "a-hash"], strict=True):
        user = UserFactory()
        get_user_model().objects.filter(pk=user.pk).update(password=secret)
        PreferencePair.objects.filter(pk=pair.pk).update(excluded=True, excluded_by=user)
    client.force_login(alice)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("review-pairs"), params)
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert [p.pk for p in response.context["page"].pairs] == [p.pk for p in default]  # not filtered, not reordered
        assert response.context["page"].matching == 3
    applied = [q["sql"] for q in queries if re.search(r"\b(WHERE|ORDER BY)\b.*password", q["sql"], re.S)]
    assert applied == []


# --- 4. CSRF ------------------------------------------------------------------------------------------------


def test_every_url_refuses_a_post_without_the_csrf_token(bob, iteration, real_ids):
    """Staff, logged in, posting to every URL (the login and logout pages and the admin's included)."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    for name, _, path, _ in every_url(real_ids):
        for response in [
            client.post(path, press("hallucinated", claim(iteration, 0))),
            client.post(path, {"exclude": "1"}, **HTMX),  # an HTMX request without its X-CSRFToken header
        ]:
            assert response.status_code == 403, (name, path, response.status_code)
            assert b"CSRF verification failed" in response.content, (name, path)
    nothing_changed(iteration)


def page_token(client, url) -> str:
    """The token a browser would send: the one in the page's `hx-headers`, which HTMX adds as X-CSRFToken."""
    html = client.get(url).content.decode()
    return json.loads(re.search(r"hx-headers='([^']*)'", html)[1])["X-CSRFToken"]


def test_every_post_endpoint_refuses_a_post_without_the_token_and_works_with_it(bob, iteration):
    client = Client(enforce_csrf_checks=True)
    token = page_token(client, reverse("login"))
    login = {"username": "bob", "password": PASSWORD}
    assert client.post(reverse("login"), login).status_code == 403
    assert client.post(reverse("login"), login | {"csrfmiddlewaretoken": token}).status_code == 302

    token = page_token(client, pair_url(iteration))  # logging in rotates the token
    decision = press("unsure", claim(iteration, 0, 1))
    assert client.post(pair_url(iteration), decision, **HTMX).status_code == 403
    assert not Review.objects.exists()
    response = client.post(pair_url(iteration), decision, headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 200 and Review.objects.count() == 1

    draft = IterationFactory(number=2, status=IterationStatus.DRAFT)
    draft.instructions.set(iteration.instructions.all())
    new = {"policy": "tiny-llava", "labeler": "tiny-llava", "splitter": "rule", "engine": "transformers",
           "split": "train", "n": 4, "temperature": 0.7, "top_p": 1.0, "max_new_tokens": 32, "seed": 0,
           "pairs_per_instruction": 2, "beta": 0.1, "learning_rate": 5e-7, "epochs": 1}  # fmt: skip
    reviewing = IterationFactory(number=3, status=IterationStatus.REVIEWING)

    def action(it, name):
        return reverse("iteration-action", args=[it.number, name])

    posts = [  # (url, form, what it changed)
        (pair_url(iteration), {"exclude": "1"}, lambda: PreferencePair.objects.get(iteration=iteration).excluded),
        (queue_url(iteration), press("correct", claim(iteration, 1, 1)), lambda: Review.objects.count() == 2),
        (reverse("iteration-new"), new, lambda: Iteration.objects.filter(created_by=bob).exists()),
        (action(draft, "launch"), {}, lambda: Iteration.objects.get(number=2).status == IterationStatus.GENERATING),
        (action(draft, "cancel"), {}, lambda: Iteration.objects.get(number=2).status == IterationStatus.CANCELLED),
        (action(draft, "resume"), {}, lambda: Iteration.objects.get(number=2).status == IterationStatus.GENERATING),
        (action(reviewing, "approve"), {}, lambda: Iteration.objects.get(number=3).status == IterationStatus.TRAINING),
    ]
    for url, form, changed in posts:
        assert client.post(url, form).status_code == 403, url
        assert not changed(), url
        assert client.post(url, form | {"csrfmiddlewaretoken": token}).status_code == 302, url
        assert changed(), url

    assert client.post(reverse("logout")).status_code == 403
    assert client.get(reverse("home")).status_code == 200
    assert client.post(reverse("logout"), {"csrfmiddlewaretoken": token}).status_code == 302
    assert client.get(reverse("home")).status_code == 302  # logged out


# --- 5. what is stored and how it is served -----------------------------------------------------------------

HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.cookie)"><script>alert(1)</script></svg>'


def import_one(tmp_path, name, data):
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    (images / name).write_bytes(data)
    (tmp_path / "data.jsonl").write_text(json.dumps({"image": name, "question": "What is it?"}) + "\n")
    call_command("import_instructions", str(tmp_path / "data.jsonl"), "--images", str(images))


def instruction_row(image_name):
    """An instruction naming a stored file, made directly (not through an import)."""
    return Instruction.objects.create(image=image_name, image_sha256="a" * 64, width=1, height=1, question="Q?")


def stored_files(media_root):
    return [p for p in Path(media_root).rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "name, data",
    [("evil.png", HTML), ("evil.html", HTML), ("evil.svg", SVG), ("evil.png", SVG), ("evil.gif", b"GIF89a" + HTML)],
)
def test_html_and_svg_are_refused_at_import_whatever_their_name(tmp_path, media_root, name, data):
    with pytest.raises(CommandError, match=f"line 1: {re.escape(name)}: not a readable image"):
        import_one(tmp_path, name, data)
    assert not Instruction.objects.exists() and stored_files(media_root) == []


@pytest.mark.parametrize("fmt, content_type", [("PNG", "image/png"), ("GIF", "image/gif")])
def test_an_image_carrying_html_is_served_as_an_image(client, alice, tmp_path, media_root, fmt, content_type):
    """A real image with HTML after its last byte is a valid image: it is stored under the extension of its
    detected format (not its name) and served with that fixed type and nosniff, so no browser renders the HTML."""
    polyglot = png_bytes(fmt=fmt) + HTML
    import_one(tmp_path, "evil.html", polyglot)
    image = Instruction.objects.get().image
    assert image.name.endswith("." + fmt.lower())
    client.force_login(alice)
    response = client.get(image.url)
    assert response.status_code == 200 and b"".join(response.streaming_content) == polyglot
    assert response["Content-Type"] == content_type
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in response["Content-Security-Policy"]


@pytest.mark.parametrize("suffix", [".svg", ".html", ".htm", ".xml", ".js", ""])
def test_a_stored_file_of_another_type_is_never_served(client, alice, media_root, suffix):
    """Even a row naming a non-image file that exists on disk (written by hand, or by an older import)."""
    name = f"images/ab/{'a' * 64}{suffix}"
    (Path(media_root) / name).parent.mkdir(parents=True)
    (Path(media_root) / name).write_bytes(SVG)
    instruction_row(name)
    client.force_login(alice)
    assert client.get("/media/" + name).status_code == 404


def test_the_admin_takes_no_image_upload(client, bob, media_root):
    """Staff cannot upload images in the admin: an upload there would skip the format, size and pixel checks
    and the content-addressed name that imports give every image."""
    client.force_login(bob)
    upload = {"image": SimpleUploadedFile("evil.png", png_bytes((5000, 5000))), "question": "Q?", "source": "s"}
    assert client.get(reverse("admin:webapp_instruction_add")).status_code == 403
    assert client.post(reverse("admin:webapp_instruction_add"), upload | {"split": "train"}).status_code == 403
    instruction = instruction_row("images/ab/x.png")
    change = reverse("admin:webapp_instruction_change", args=[instruction.pk])
    assert b'type="file"' not in client.get(change).content
    upload = {"image": SimpleUploadedFile("evil.png", png_bytes()), "question": "Q?", "source": "s", "split": "train"}
    assert client.post(change, upload).status_code == 302
    instruction.refresh_from_db()
    assert instruction.image.name == "images/ab/x.png" and stored_files(media_root) == []


# --- 6. no server-side fetch of a URL from user input -------------------------------------------------------


@pytest.fixture
def http_server():
    """A real HTTP server on a free port that records every request it gets (and answers 404)."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append((self.command, self.path))
            self.send_response(404)
            self.end_headers()

        do_HEAD = do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", requests
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("scheme", ["http", "https", "file"])
def test_an_image_url_in_an_import_is_refused_and_never_fetched(tmp_path, media_root, http_server, scheme):
    base, requests = http_server
    url = base.replace("http", scheme, 1) + "/x.png" if scheme != "file" else "file:///etc/hostname"
    (tmp_path / "images").mkdir()
    (tmp_path / "data.jsonl").write_text(json.dumps({"image": url, "question": "Q?"}) + "\n")
    with pytest.raises(CommandError, match="line 1: field 'image' must be a file in the images folder, not a URL"):
        call_command("import_instructions", str(tmp_path / "data.jsonl"), "--images", str(tmp_path / "images"))
    assert requests == [] and not Instruction.objects.exists()


def test_an_rlaifv_image_given_by_url_is_refused_and_never_fetched(tmp_path, media_root, http_server):
    base, requests = http_server
    record = RlaifvRecord(None, "Q?", "yes", "no", image_path=f"{base}/x.png")
    write_rlaifv([record], tmp_path / "pairs.parquet")
    with pytest.raises(CommandError, match="images must be embedded"):
        call_command("import_rlaifv", str(tmp_path / "pairs.parquet"))
    assert requests == [] and not Instruction.objects.exists()


@pytest.mark.parametrize("field", ["policy", "labeler", "splitter"])
def test_a_model_url_in_the_iteration_form_is_refused_and_never_fetched(client, bob, iteration, http_server, field):
    base, requests = http_server
    form = {"policy": "tiny-llava", "labeler": "tiny-llava", "splitter": "rule", "engine": "transformers",
            "split": "train", "n": 4, "temperature": 0.7, "top_p": 1.0, "max_new_tokens": 32, "seed": 0,
            "pairs_per_instruction": 2, "beta": 0.1, "learning_rate": 5e-7, "epochs": 1}  # fmt: skip
    client.force_login(bob)
    response = client.post(reverse("iteration-new"), form | {field: f"{base}/org/model"})
    assert response.status_code == 200 and b"not a URL" in response.content
    assert Iteration.objects.count() == 1 and requests == []


@pytest.mark.slow
def test_a_worker_asked_to_load_a_model_url_fetches_nothing(settings, tiny_models_dir, http_server, engines):
    """A URL that reached an iteration row anyway (the database) is still never fetched: a worker loads only
    folders under MODELS_DIR (webapp/places.py)."""
    settings.MODELS_DIR = tiny_models_dir
    base, requests = http_server
    for model, text_model in [(f"{base}/org/model", None), ("tiny-llava", f"{base}/org/model")]:
        with pytest.raises(ModelLoadError, match="not a URL"):
            backend_for("transformers", model, text_model).complete(["Hello"], Sampling(max_new_tokens=1))
    assert requests == []


# --- 7. model weights: safetensors only, never pickle -------------------------------------------------------


class RunsCode:
    """Unpickling this runs `code`: what a malicious pytorch_model.bin does."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


@pytest.fixture
def pickled(tiny_models_dir, tmp_path):
    """(make, marker): make(name) copies a tiny model with its weights replaced by a pytorch_model.bin that
    writes `marker` when unpickled."""
    marker = tmp_path / "PWNED"

    def write_payload(path):
        torch.save({"weights": RunsCode(f"open({str(marker)!r}, 'w').write('pwned')")}, path)

    def make(name):
        folder = tmp_path / f"pickled-{name}"
        shutil.copytree(tiny_models_dir / name, folder)
        (folder / "model.safetensors").unlink()
        write_payload(folder / "pytorch_model.bin")
        return folder

    # The payload is live: an unsafe load runs it.
    write_payload(tmp_path / "live.bin")
    torch.load(tmp_path / "live.bin", weights_only=False)
    assert marker.read_text() == "pwned"
    marker.unlink()
    return make, marker


@pytest.fixture
def torch_loads(monkeypatch):
    """Every torch.load call from now on (the real one still runs)."""
    calls, real = [], torch.load

    def spy(*args, **kwargs):
        calls.append(args[0] if args else kwargs.get("f"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    return calls


def load_labeler(make, good, tmp_path):
    return backend_for("transformers", str(make("tiny-llava")))


def load_divide_llm(make, good, tmp_path):
    backend = backend_for("transformers", str(good / "tiny-llava"), str(make("tiny-lm")))
    return backend.complete(["Hello"], Sampling(max_new_tokens=1))


def load_self_reward_models(make, good, tmp_path):
    return reward_models(str(make("tiny-llava")), str(good / "tiny-llava"))


def load_dpo_policy(make, good, tmp_path):
    from labeling.formats import write_trl_dataset
    from training.dpo import DPOSettings, train_dpo

    write_trl_dataset([RlaifvRecord(png_bytes((32, 32)), "What?", "red", "blue")], tmp_path / "pairs")
    return train_dpo(tmp_path / "pairs", make("tiny-llava"), tmp_path / "out", DPOSettings(max_steps=1))


def load_lora_adapter(make, good, tmp_path):
    from peft import LoraConfig

    from training.dpo import merge_adapter

    adapter = make("tiny-llava")  # its pytorch_model.bin stands in for adapter_model.bin
    (adapter / "pytorch_model.bin").rename(adapter / "adapter_model.bin")
    config = LoraConfig(r=2, target_modules=["q_proj"], base_model_name_or_path=str(good / "tiny-llava"))
    config.save_pretrained(adapter)
    return merge_adapter(adapter, tmp_path / "merged")


@pytest.mark.slow
@pytest.mark.parametrize(
    "load", [load_labeler, load_divide_llm, load_self_reward_models, load_dpo_policy, load_lora_adapter]
)
def test_a_pickled_checkpoint_is_refused_unopened_by_every_model_loader(
    settings, tiny_models_dir, tmp_path, pickled, torch_loads, engines, load
):
    """The policy / labeler and the divide LLM (webapp.jobs.engines, as workers load them), the self-reward models,
    the DPO policy and a LoRA adapter to merge: each refuses a checkpoint without safetensors weights, before
    torch.load ever sees the pickle (whose own weights_only check would be the only defence left)."""
    settings.MODELS_DIR = tmp_path  # where `pickled` writes its checkpoints; the good ones linked in
    (tmp_path / "good").symlink_to(tiny_models_dir)
    make, marker = pickled
    with pytest.raises((ModelLoadError, OSError, ValueError)) as error:
        load(make, tmp_path / "good", tmp_path)
    assert "safetensors" in str(error.value)
    assert torch_loads == []
    assert not marker.exists()


def test_staff_actions_check_the_models_permissions_as_the_admin_does(client, iteration):
    """Found by an attack: staff without model permissions, refused by the admin, exported an iteration's pairs
    and applied a margin on the site (`staff_required` checked only is_staff)."""
    from django.contrib.auth.models import Permission

    staff = UserFactory(username="plain-staff", is_staff=True)
    client.force_login(staff)
    number = iteration.number
    refused = {
        "export": client.get(reverse("iteration-export", args=[number, "trl"])),
        "margin": client.post(reverse("iteration-margin", args=[number]), {"margin": "0.2"}),
        "audit": client.post(reverse("review-audit-start", args=[number]), {"design": "uniform", "size": 3}),
        "new": client.get(reverse("iteration-new")),
        "action": client.post(reverse("iteration-action", args=[number, "cancel"])),
        "import": client.get(reverse("imports")),
    }
    assert {name: r.status_code for name, r in refused.items()} == dict.fromkeys(refused, 403)
    assert "lacks the permission" in refused["export"].content.decode()
    iteration.refresh_from_db()
    assert iteration.margin == 0 and not iteration.audit_samples.exists()

    staff.user_permissions.add(Permission.objects.get(codename="view_preferencepair"))
    client.force_login(UserFactory._meta.model.objects.get(pk=staff.pk))  # permissions are cached per user object
    assert client.get(reverse("iteration-export", args=[number, "trl"])).status_code == 200
    assert client.post(reverse("iteration-margin", args=[number]), {"margin": "0.2"}).status_code == 403
