"""The audit trail: `record` one state-changing action, inside the transaction that makes it, so the action
and its record commit together or not at all; `recent` reads an iteration's last events for its page.

Reviews are their own trail (append-only `Review` rows) and are not recorded here; nor are the moves the
workers make by themselves (a stage finishing, a job failing).
"""

from webapp.accounts.actors import Actor, current_actor
from webapp.models import AuditEvent, Iteration

RECENT = 10  # events on the iteration page


def record(action: str, *, iteration: Iteration | None = None, target: str = "", actor: Actor | None = None,
           **details) -> AuditEvent:  # fmt: skip
    """Append an event; the actor is the request's user, else the command line, unless one is given."""
    actor = actor or current_actor()
    return AuditEvent.objects.create(
        user=actor.user,
        actor=actor.name[:200],
        address=actor.address,
        action=action,
        iteration=iteration.number if iteration is not None else None,
        target=target[:300],
        details=details,
    )


def recent(iteration: Iteration, limit: int = RECENT) -> list[AuditEvent]:
    """The iteration's last events, newest first. Numbers are reused only if the last iteration is deleted: events
    from before this one was created belong to its deleted namesake."""
    events = AuditEvent.objects.filter(iteration=iteration.number, created_at__gte=iteration.created_at)
    return list(events[:limit])
