"""Ids and cursors past the database's integer range are a 404 (in a path) or a 400 (the pair list's cursor),
never a 500 (SQLite's OverflowError) and never a query (PostgreSQL would compare the column as numeric and skip
its index). Run on SQLite and on PostgreSQL (DATABASE_URL)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.review_data import reviewing_iteration
from tests.test_review_views import HTMX, answer, claim, pair_url, press, queue_url
from webapp.models import Review

pytestmark = pytest.mark.django_db
BIGINT_MAX = 2**63 - 1
PAST = ["9223372036854775808", "99999999999999999999", "9" * 5000]


@pytest.fixture
def iteration():
    return reviewing_iteration([[0.9, 0.8], [0.9, 0.45]])


@pytest.mark.parametrize("huge", PAST)
def test_a_pair_url_past_the_range_of_ids_is_not_found(client, alice, iteration, huge):
    client.force_login(alice)
    real, number = answer(iteration, 1).pk, iteration.number
    decision = press("correct", claim(iteration, 0))
    paths = [f"/review/{number}/pairs/{huge}-{real}/", f"/review/{number}/pairs/{real}-{huge}/"]
    paths += [f"/review/{huge}/pairs/{real}-{real}/", f"/review/{huge}/spot-check/"]
    for path in paths:
        for response in [client.get(path), client.get(path, **HTMX), client.post(path, decision)]:
            assert response.status_code == 404, (path, response.status_code)
    assert not Review.objects.exists()


@pytest.mark.parametrize("huge", PAST)
def test_the_staff_pages_past_the_range_of_ids_are_not_found(client, bob, huge):
    client.force_login(bob)
    for path in [f"/iterations/{huge}/", f"/iterations/{huge}/export/trl/", f"/imports/{huge}/"]:
        assert client.get(path).status_code == 404, path
    assert client.post(f"/iterations/{huge}/approve/").status_code == 404


def test_the_largest_id_is_looked_up_and_names_nothing(client, alice, iteration):
    client.force_login(alice)
    response = client.get(f"/review/{iteration.number}/pairs/{BIGINT_MAX}-{answer(iteration, 1).pk}/")
    assert response.status_code == 404


@pytest.mark.parametrize(
    "after",
    ["99999999999999999999.1", "1.99999999999999999999", f"1.{BIGINT_MAX + 1}", "1." + "9" * 5000, "١.١", "1.1\n2"],
)
def test_a_cursor_past_the_range_or_not_a_cursor_is_a_bad_request_and_runs_no_query_with_it(client, alice, after):
    iteration = reviewing_iteration([[0.9] * 3, [0.2] * 3])
    client.force_login(alice)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("review-pairs"), {"iteration": iteration.number, "after": after})
    assert response.status_code == 400
    assert response.content.decode().startswith("after: not a cursor of this list")
    assert not [q for q in queries if "pair" in q["sql"].lower()], "the pairs were queried"


def test_the_largest_cursor_in_range_is_queried(client, alice):
    """(largest gap, largest id): past every pair smallest gap first, before every pair largest gap first."""
    iteration = reviewing_iteration([[0.9] * 3, [0.2] * 3])
    client.force_login(alice)
    gap_max = connection.ops.integer_field_range("PositiveIntegerField")[1]
    for sort, shown in [("gap", 0), ("-gap", 1)]:
        params = {"iteration": iteration.number, "sort": sort, "after": f"{gap_max}.{BIGINT_MAX}"}
        response = client.get(reverse("review-pairs"), params)
        assert response.status_code == 200 and len(response.context["page"].pairs) == shown, sort


@pytest.mark.parametrize("value", ["²", "99999999999999999999", "-1"])
def test_a_posted_or_queried_id_that_is_no_id_is_refused_not_a_server_error(client, alice, iteration, value):
    client.force_login(alice)
    assert client.get(queue_url(iteration), {"last": value}).status_code == 200  # no last decision to show
    for url in [pair_url(iteration), queue_url(iteration)]:
        assert client.post(url, {"correct": value}).status_code == 400
        assert client.post(url, {"undo": value}).status_code == 400
    assert not Review.objects.exists()
