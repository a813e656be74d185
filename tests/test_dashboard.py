"""The dashboard: iterations with live progress, counts, scores, agreement with reviewers, and trends."""

import pytest
from django.urls import reverse

from tests.factories import InstructionFactory, IterationFactory, JobFactory
from tests.review_data import SESSION_RENEWAL, reviewing_iteration
from webapp.iterations.metrics import iteration_stats, wilson_interval
from webapp.models import Claim, Decision, IterationStatus, JobKind, JobState
from webapp.review.service import record_review

pytestmark = pytest.mark.django_db


def claim(iteration, seed, index=0):
    claims = Claim.objects.select_related("response").filter(response__iteration=iteration, response__seed=seed)
    return claims.filter(index=index).order_by("pk").first()


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_users_outside_the_reviewer_group_see_it_read_only(client, charlie):
    iteration = reviewing_iteration([[0.9], [0.2]])
    IterationFactory(status=IterationStatus.LABELING)
    client.force_login(charlie)
    response = client.get(reverse("home"))
    html = response.content.decode()
    assert response.status_code == 200 and "data-read-only" in html
    assert "ask a staff member to add charlie" in html
    assert f'data-iteration="{iteration.number}"' in html
    # No link or poll into pages that would refuse them, in the page or its navigation.
    for refused in [reverse("iteration", args=[iteration.number]), reverse("review-pairs"), reverse("iterations")]:
        assert f'"{refused}' not in html
    assert "hx-get" not in html


def test_reviewers_and_staff_see_the_dashboard(client, alice, bob):
    for user in (alice, bob):
        client.force_login(user)
        assert client.get(reverse("home")).status_code == 200


def test_the_wilson_interval():
    low, high = wilson_interval(8, 10)
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 10)[0] == 0.0


def test_it_counts_scores_and_agreement_per_iteration(alice):
    iteration = reviewing_iteration([[0.9, 0.9], [0.9, 0.2], [0.2, 0.2]])
    record_review(claim(iteration, 0, 0), alice, Decision.HALLUCINATED)  # the labeler accepted it: disagree
    record_review(claim(iteration, 1, 1), alice, Decision.HALLUCINATED)  # the labeler rejected it: agree
    record_review(claim(iteration, 2, 0), alice, Decision.UNSURE)  # not a decision
    (stats,) = iteration_stats([iteration])
    assert (stats.responses, stats.claims, stats.rejected) == (3, 6, 4)
    assert stats.rejected_share == 4 / 6
    assert stats.score_histogram == [(-1, 2), (-2, 1)]
    assert (stats.agreement.agree, stats.agreement.n) == (1, 2)
    assert (stats.pairs, stats.excluded) == (2, 0)


def test_the_dashboard_shows_each_iteration(client, alice):
    iteration = reviewing_iteration([[0.9], [0.2]], metrics={"<b>chair</b>": 0.25})
    record_review(claim(iteration, 1), alice, Decision.HALLUCINATED)
    InstructionFactory(source="<i>web</i>")
    client.force_login(alice)
    html = client.get(reverse("home")).content.decode()
    assert f'href="/iterations/{iteration.number}/"' in html
    assert reverse("review-queue", args=[iteration.number]) in html
    assert "50.0%" in html  # one of two claims rejected
    assert "1.00 [0.21, 1.00]" in html  # agreement 1/1 with its Wilson interval
    assert '<canvas id="trend-0" role="img" aria-label="How often the labeler is right">' in html
    assert "Training claims the labeler rejected" in html and 'id="chart-data"' in html
    assert "&lt;b&gt;chair&lt;/b&gt;" in html and "<b>chair" not in html
    assert "&lt;i&gt;web&lt;/i&gt;" in html


def test_it_says_the_next_iteration_can_start_from_the_last_checkpoint(client, alice, bob):
    IterationFactory(number=1, status=IterationStatus.DONE, checkpoint="checkpoints/iteration-1")
    client.force_login(alice)
    html = client.get(reverse("home")).content.decode()
    assert 'data-next-policy="checkpoints/iteration-1"' in html and "Iteration 2 can start" in html
    assert reverse("iteration-new") not in html  # reviewers cannot create iterations
    client.force_login(bob)
    assert reverse("iteration-new") in client.get(reverse("home")).content.decode()
    IterationFactory(number=2, status=IterationStatus.GENERATING)
    assert "data-next-policy" not in client.get(reverse("home")).content.decode()


def test_running_iterations_poll_their_progress_and_finished_ones_do_not(client, alice):
    running = IterationFactory(status=IterationStatus.LABELING)
    JobFactory(iteration=running, kind=JobKind.LABEL, done=3, total=10, state=JobState.RUNNING)
    done = IterationFactory(status=IterationStatus.DONE)
    client.force_login(alice)
    html = client.get(reverse("home")).content.decode()
    assert f'hx-get="/iterations/{running.number}/" hx-trigger="every 1s"' in html
    assert f'hx-get="/iterations/{done.number}/"' not in html
    assert 'value="30"' in html  # 3 of 10 done
    response = client.get(f"/iterations/{running.number}/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and b'value="30"' in response.content


@pytest.mark.parametrize("iterations", [1, 4])
def test_the_dashboard_costs_a_fixed_number_of_queries(client, alice, django_assert_max_num_queries, iterations):
    for _ in range(iterations):
        iteration = reviewing_iteration([[0.9, 0.4], [0.2]], [[0.6], [0.3]])
        JobFactory(iteration=iteration, kind=JobKind.LABEL, done=1, total=2)
        record_review(claim(iteration, 1), alice, Decision.CORRECT)
    client.force_login(alice)
    with django_assert_max_num_queries(10 + SESSION_RENEWAL):
        response = client.get(reverse("home"))
    assert len(response.context["rows"]) == iterations
