"""Creating an iteration: the one way the form, `run_iteration`, the RLAIF-V import and the admin make one.

Numbers are unique in the database (`Iteration.number`). The next number is read and the row inserted in a
savepoint; when a concurrent creator took that number first, the unique index refuses the insert (on
PostgreSQL it waits until the other transaction ends) and the loser reads the next number again. SQLite
runs one writing transaction at a time (`transaction_mode` IMMEDIATE), so there the race never happens.
"""

from django.db import IntegrityError, transaction
from django.db.models import Max

from webapp.accounts import audit
from webapp.models import AuditAction, Iteration

ATTEMPTS = 20


def next_number() -> int:
    return (Iteration.objects.aggregate(last=Max("number"))["last"] or 0) + 1


def create_iteration(*, instructions, created_by=None, **fields) -> Iteration:
    """A new iteration (a draft unless `fields` give a status) on `instructions`, numbered after the last one;
    its creation is on the audit trail, in the same transaction."""
    with transaction.atomic():
        for attempt in range(ATTEMPTS):
            number = next_number()
            try:
                with transaction.atomic():  # a savepoint: a lost race undoes only this insert
                    iteration = Iteration.objects.create(number=number, created_by=created_by, **fields)
                break
            except IntegrityError:
                # Another constraint failed, or the race was lost too often: that is a real error.
                if attempt == ATTEMPTS - 1 or not Iteration.objects.filter(number=number).exists():
                    raise
        iteration.instructions.set(instructions)
        audit.record(
            AuditAction.CREATE,
            iteration=iteration,
            target=str(iteration),
            status=iteration.status,
            policy=iteration.policy,
            labeler=iteration.labeler,
            instructions=iteration.instructions.count(),
        )
    return iteration
