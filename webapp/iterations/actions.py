"""Staff's iteration actions as the pages offer them: the staff pages and the admin share this one door, so
both run the same lifecycle transition and answer with the same words ("cannot cancel from status done")."""

from django.contrib import messages

from webapp.iterations import lifecycle
from webapp.models import Iteration, IterationStatus

ACTIONS = {
    "launch": lifecycle.launch,
    "approve": lifecycle.approve,
    "resume": lifecycle.resume,
    "cancel": lifecycle.cancel,
}
LABELS = {
    "launch": "Launch",
    "approve": "Approve review gate and train",
    "resume": "Resume",
    "cancel": "Cancel",
}


# What a button asks before it acts (webapp/static/webapp/confirm.js): approving starts minutes of training and
# closes the review gate, and cannot be taken back.
CONFIRMS = {
    "approve": "Close the review gate and start training? Reviews can no longer change the pairs.",
}


def buttons(iteration: Iteration) -> list[tuple[str, str, str]]:
    """(action, label, question to confirm or "") for each action the iteration's status allows."""
    return [(action, LABELS[action], CONFIRMS.get(action, "")) for action in offered(iteration)]


def offered(iteration: Iteration) -> list[str]:
    """The actions that can succeed from the iteration's status, in the order the pages show them."""
    status = iteration.status
    return [
        action
        for action, possible in [
            ("launch", status == IterationStatus.DRAFT),
            ("approve", status == IterationStatus.REVIEWING),
            ("resume", status in (IterationStatus.FAILED, IterationStatus.CANCELLED)),
            ("cancel", status in lifecycle.ACTIVE),
        ]
        if possible
    ]


def run_action(request, iteration: Iteration, action: str) -> bool:
    """Run one action through the lifecycle and tell the user how it went; the caller checked it is staff's."""
    try:
        done = ACTIONS[action](iteration)
    except ValueError as exc:
        messages.error(request, str(exc))
        return False
    if done:
        messages.success(request, f"{iteration}: {action} done.")
    else:
        iteration.refresh_from_db(fields=["status"])
        messages.warning(request, f"{iteration} cannot {action} from status {iteration.status}.")
    return done
