"""The review pages' read queries. Each returns plain frozen dataclasses, so what a page shows beyond a model's
own fields (a claim's effective verdict, who decided it, a side's heading) is declared here once instead of
being set as attributes on model instances by the views.

Writes live in webapp.review (the review service); these only read.
"""

from collections import Counter

from django.db.models import Exists, F, OuterRef
from django.db.models.functions import Abs

from webapp.models import Iteration, Review, Verdict

# The spot-check queue stratifies this many of the most uncertain unreviewed verdicts.
QUEUE_WINDOW = 100


def spot_check_queue(iteration: Iteration, window: int = QUEUE_WINDOW) -> list[int]:
    """Verdict ids of the iteration's unreviewed claims in serving order: most uncertain labeler verdict
    (smallest |p_yes − p_no|) first, the `window` most uncertain stratified (see `stratify`) so a reviewer
    does not see ten claims of one answer in a row."""
    reviewed = Review.objects.filter(claim=OuterRef("claim"))
    rows = (
        Verdict.objects.filter(labeler=iteration.labeler, claim__response__iteration=iteration)
        .filter(~Exists(reviewed))
        .order_by(Abs(F("p_yes") - F("p_no")), "pk")  # verdict_uncertainty_idx
        .values_list("pk", "claim__response", "claim__response__instruction")
    )
    return stratify(list(rows[:window]))


def stratify(rows: list[tuple[int, int, int]]) -> list[int]:
    """(verdict, answer, instruction) rows in uncertainty order, taken round-robin: every instruction's first
    claim before any instruction's second, and within an instruction every answer's first before any second."""
    per_answer, per_instruction = Counter(), Counter()
    by_answer = []
    for position, (verdict, answer, instruction) in enumerate(rows):
        by_answer.append((per_answer[answer], position, verdict, instruction))
        per_answer[answer] += 1
    ranked = []
    for _, position, verdict, instruction in sorted(by_answer):
        ranked.append((per_instruction[instruction], position, verdict))
        per_instruction[instruction] += 1
    return [verdict for *_, verdict in sorted(ranked)]
