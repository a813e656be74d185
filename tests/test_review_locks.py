"""Reviews lock only the instruction they rebuild: reviewers of other instructions never wait for each other,
reviews of one instruction take turns and lose nothing, and approving the gate waits for reviews in flight.

Row locks are PostgreSQL's; SQLite runs one writing transaction at a time, so there is nothing to test there.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.db import OperationalError, connection, transaction

from tests.review_data import reviewing_iteration
from webapp.iterations import counts
from webapp.models import Claim, Decision, IterationCounts, IterationStatus, PreferencePair, Review
from webapp.review.service import ReviewClosed, rebuild_pairs, record_review

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql", reason="row locks: PostgreSQL"
    ),
]


def claims_of(iteration, instruction):
    return list(
        Claim.objects.filter(response__iteration=iteration, response__instruction=instruction).select_related(
            "response"
        )
    )


def instructions(iteration):
    return list(iteration.instructions.order_by("pk"))


class ReviewInFlight(threading.Thread):
    """Holds the locks a review of `instruction` holds, in another connection, until `release` is set."""

    def __init__(self, iteration, instruction):
        super().__init__()
        self.iteration, self.instruction = iteration, instruction
        self.locked, self.release = threading.Event(), threading.Event()

    def run(self):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT id FROM webapp_iteration WHERE id = %s FOR SHARE", [self.iteration.pk])
                cursor.execute(
                    "SELECT id FROM webapp_instruction WHERE id = %s FOR NO KEY UPDATE", [self.instruction.pk]
                )
                self.locked.set()
                self.release.wait(30)
        finally:
            connection.close()


def waiting_at_most(seconds: float):
    """The next statements of this connection give up on a lock after `seconds`."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = '{int(seconds * 1000)}ms'")


def test_a_review_in_flight_blocks_its_instruction_and_the_gate_but_not_other_instructions(alice):
    iteration = reviewing_iteration([[0.9, 0.9], [0.2, 0.9]], [[0.9, 0.9], [0.2, 0.9]])
    busy, free = instructions(iteration)
    in_flight = ReviewInFlight(iteration, busy)
    in_flight.start()
    assert in_flight.locked.wait(10)
    try:
        waiting_at_most(1)
        record_review(claims_of(iteration, free)[0], alice, Decision.HALLUCINATED)  # does not wait
        with pytest.raises(OperationalError, match="lock timeout"):
            record_review(claims_of(iteration, busy)[0], alice, Decision.HALLUCINATED)
        with pytest.raises(OperationalError, match="lock timeout"):
            iteration.advance(IterationStatus.REVIEWING, IterationStatus.TRAINING)  # what approving does
    finally:
        in_flight.release.set()
        in_flight.join()
    assert Review.objects.count() == 1
    assert iteration.advance(IterationStatus.REVIEWING, IterationStatus.TRAINING)


def test_a_review_that_waited_for_the_approval_finds_the_gate_closed(alice):
    iteration = reviewing_iteration([[0.9, 0.9], [0.2, 0.9]])
    approved, outcome = threading.Event(), []

    def review():
        try:
            approved.wait(10)
            record_review(claims_of(iteration, instructions(iteration)[0])[0], alice, Decision.HALLUCINATED)
            outcome.append("recorded")
        except ReviewClosed:
            outcome.append("closed")
        finally:
            connection.close()

    reviewer = threading.Thread(target=review)
    reviewer.start()
    with transaction.atomic():
        assert iteration.advance(IterationStatus.REVIEWING, IterationStatus.TRAINING)
        approved.set()
        reviewer.join(1)
        assert reviewer.is_alive()  # waiting for the approval to commit
    reviewer.join(10)
    assert outcome == ["closed"] and not Review.objects.exists()


def test_reviewers_racing_on_the_same_instructions_lose_nothing(alice):
    iteration = reviewing_iteration(*[[[0.9, 0.2, 0.6], [0.4, 0.9, 0.1], [0.8, 0.3, 0.7]] for _ in range(2)])
    claims = list(Claim.objects.filter(response__iteration=iteration).select_related("response").order_by("pk"))
    decisions = [Decision.CORRECT, Decision.HALLUCINATED]

    def reviewer(n: int) -> int:
        try:
            for k in range(10):
                record_review(claims[(n * 7 + k * 5) % len(claims)], alice, decisions[(n + k) % 2])
            return 10
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        recorded = sum(pool.map(reviewer, range(8)))
    assert Review.objects.count() == recorded == 80
    stored = set(PreferencePair.objects.values_list("instruction", "chosen", "rejected", "score_gap"))
    with transaction.atomic():
        for instruction in instructions(iteration):
            rebuild_pairs(iteration, instruction.pk)  # what the verdicts make: no change when nothing was lost
    assert set(PreferencePair.objects.values_list("instruction", "chosen", "rejected", "score_gap")) == stored
    row, fresh = IterationCounts.objects.get(iteration=iteration), counts.tally(iteration)
    assert (row.pairs, row.rejected, row.agree, row.decided) == (
        fresh.pairs,
        fresh.rejected,
        fresh.agree,
        fresh.decided,
    )
