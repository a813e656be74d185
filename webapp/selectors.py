"""The review pages' read queries. Each returns plain frozen dataclasses, so what a page shows beyond a model's
own fields (a claim's effective verdict, who decided it, a side's heading) is declared here once instead of
being set as attributes on model instances by the views.

Writes live in webapp.review (the review service); these only read.
"""

from collections import Counter
from dataclasses import dataclass

from django.db.models import BooleanField, Exists, F, OuterRef, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Abs
from django.http import Http404

from webapp.models import (
    Iteration,
    IterationStatus,
    PreferencePair,
    Review,
    Verdict,
)

PAGE_SIZE = 25
COUNT_CAP = 200  # the list counts at most this many matches, so a count never walks a whole iteration
# The spot-check queue stratifies this many of the most uncertain unreviewed verdicts.
QUEUE_WINDOW = 100


def _row_after(op: str):
    """Rows after the cursor (score gap, id) as one row comparison, which the pair indexes seek to directly."""
    columns = ", ".join(f"{PreferencePair._meta.db_table}.{c}" for c in ("score_gap", "id"))
    return lambda gap, pk: RawSQL(f"({columns}) {op} (%s, %s)", (gap, pk), output_field=BooleanField())


# Keyset pagination: the ordering, and the rows after a cursor (score gap, id) in it.
SORTS = {
    "-gap": (("-score_gap", "-pk"), _row_after("<")),
    "gap": (("score_gap", "pk"), _row_after(">")),
    "-id": (("-pk",), lambda gap, pk: Q(pk__lt=pk)),
    "id": (("pk",), lambda gap, pk: Q(pk__gt=pk)),
}
# What a row of the list shows: answers' texts and timestamps stay in the database.
LIST_FIELDS = [
    "score_gap", "excluded", "chosen", "rejected", "instruction__question", "instruction__source",
    "chosen__score", "chosen__reviewed", "rejected__score", "rejected__reviewed",
]  # fmt: skip


# --- the pair list ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IterationChoice:
    """The iterations the pair list offers, newest first, and the one it shows (None when there are none)."""

    iterations: list[Iteration]
    shown: Iteration | None


@dataclass(frozen=True)
class PairPage:
    """One keyset page of the matching pairs, the query strings of the next and first pages, a capped count."""

    pairs: list[PreferencePair]
    next_cursor: str  # "" on the last page
    next_query: str
    first_query: str
    matching: int  # at most count_cap + 1
    count_cap: int


def iteration_choice(number: int | None) -> IterationChoice:
    """The iteration numbered `number` (404 when there is none); by default the one waiting at its review gate,
    else the latest."""
    iterations = list(Iteration.objects.order_by("-number"))
    by_number = {it.number: it for it in iterations}
    if number and number not in by_number:
        raise Http404("no such iteration")
    reviewing = [it for it in iterations if it.status == IterationStatus.REVIEWING]
    return IterationChoice(iterations, by_number.get(number) or (reviewing or iterations or [None])[0])


def filter_pairs(iteration: Iteration, filters: dict):
    """The iteration's pairs that match the pair list's filters (a PairFilter's cleaned data)."""
    pairs = PreferencePair.objects.filter(iteration=iteration)
    if filters["reviewed"]:
        has_review = Q(chosen__reviewed=True) | Q(rejected__reviewed=True)
        pairs = pairs.filter(has_review if filters["reviewed"] == "yes" else ~has_review)
    if filters["excluded"]:
        pairs = pairs.filter(excluded=filters["excluded"] == "yes")
    if filters["min_gap"]:
        pairs = pairs.filter(score_gap__gte=filters["min_gap"])
    if filters["max_gap"]:
        pairs = pairs.filter(score_gap__lte=filters["max_gap"])
    if filters["source"]:
        pairs = pairs.filter(instruction__source=filters["source"])
    return pairs


def pair_page(iteration: Iteration, filters: dict, query) -> PairPage:
    """The page of matching pairs after the cursor `filters["after"]`; `query` (the request's GET) carries the
    filters into the links to the next and first pages."""
    order, after = SORTS[filters["sort"] or "-gap"]
    matching = filter_pairs(iteration, filters)
    page = matching.select_related("instruction", "chosen", "rejected").only(*LIST_FIELDS).order_by(*order)
    if filters["after"]:
        page = page.filter(after(*map(int, filters["after"].split("."))))
    page = list(page[: PAGE_SIZE + 1])
    pairs, last = page[:PAGE_SIZE], page[PAGE_SIZE - 1] if len(page) > PAGE_SIZE else None
    query = query.copy()
    query["iteration"] = iteration.number
    query.pop("after", None)
    first_query = query.urlencode()
    query["after"] = next_cursor = f"{last.score_gap}.{last.pk}" if last else ""
    return PairPage(
        pairs=pairs,
        next_cursor=next_cursor,
        next_query=query.urlencode(),
        first_query=first_query,
        matching=matching.order_by()[: COUNT_CAP + 1].count(),
        count_cap=COUNT_CAP,
    )


# --- the spot-check queue -----------------------------------------------------------------------------------


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
