"""An iteration at its review gate, built the way the pipeline builds one: labeled answers combined by the
real combine stage. Shared by the review, dashboard and browser tests."""

from tests.factories import (
    ClaimFactory,
    InstructionFactory,
    IterationFactory,
    JobFactory,
    ResponseFactory,
    VerdictFactory,
)
from webapp.jobs import rlaifv
from webapp.models import IterationStatus, JobKind, ResponseStatus

# What a logged-in request may add to a page's queries: the session is written when its renewal is due
# (webapp/accounts/session_renewal.py; the first request after a login), in the test's transaction a savepoint, the
# update and its release.
SESSION_RENEWAL = 3


def reviewing_iteration(*instructions, texts=None, config=None, **fields):
    """`instructions` holds, per instruction, its answers; an answer is the labeler's p_yes of each claim
    (p_no = 1 − p_yes, so p_yes > 0.5 accepts). Every candidate pair is kept unless `config` says otherwise."""
    iteration = IterationFactory(
        status=IterationStatus.COMBINING, config={"pairs_per_instruction": 45} | (config or {}), **fields
    )
    for answers in instructions:
        instruction = InstructionFactory()
        iteration.instructions.add(instruction)
        for seed, p_yes in enumerate(answers):
            text = (texts or {}).get(seed, f"Answer {seed} says the cat is on the red sofa by the window.")
            response = ResponseFactory(
                iteration=iteration, instruction=instruction, seed=seed, text=text, status=ResponseStatus.LABELED
            )
            for index, p in enumerate(p_yes):
                claim = ClaimFactory(
                    response=response, index=index, text=f"Claim {index} of answer {seed}.", question=f"Is {index}?"
                )
                VerdictFactory(claim=claim, p_yes=p, p_no=round(1 - p, 6))
    rlaifv.combine(JobFactory(iteration=iteration, kind=JobKind.COMBINE, chunk=0, total=0))
    iteration.refresh_from_db()
    iteration.status = IterationStatus.REVIEWING
    iteration.save(update_fields=["status"])
    return iteration
