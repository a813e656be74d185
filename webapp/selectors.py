"""The review pages' read queries. Each returns plain frozen dataclasses, so what a page shows beyond a model's
own fields (a claim's effective verdict, who decided it, a side's heading) is declared here once instead of
being set as attributes on model instances by the views.

Writes live in webapp.review (the review service); these only read.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connections
from django.db.models import BooleanField, Count, Exists, F, OuterRef, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Abs
from django.http import Http404

from webapp.models import (
    Claim,
    Decision,
    EffectiveVerdict,
    Instruction,
    Iteration,
    IterationStatus,
    PreferencePair,
    Response,
    Review,
    Verdict,
    effective_verdicts,
    with_labeler_verdict,
)

PAGE_SIZE = 25
SEARCH_CONFIG = "english"  # the text search configuration of the search indexes (migration pair_search_indexes)
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
# The sides' headings by the pair's state after reviews: (left, right).
HEADINGS = {
    "flipped": ("Was chosen, now rejected", "Was rejected, now chosen"),
    "paired": ("Chosen", "Rejected"),
    "unpaired": ("Listed as chosen", "Listed as rejected"),
}


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
    """The iteration numbered `number` (404 when there is none); by default the latest that has pairs (a newer
    one still generating has none to show), else the latest."""
    has_pairs = Exists(PreferencePair.objects.filter(iteration=OuterRef("pk")))
    iterations = list(Iteration.objects.annotate(has_pairs=has_pairs).order_by("-number"))
    by_number = {it.number: it for it in iterations}
    if number and number not in by_number:
        raise Http404("no such iteration")
    with_pairs = [it for it in iterations if it.has_pairs]
    return IterationChoice(iterations, by_number.get(number) or (with_pairs or iterations or [None])[0])


def instruction_sources() -> list[str]:
    """Every instruction source, for the pair list's source filter."""
    return list(Instruction.objects.values_list("source", flat=True).distinct().order_by("source"))


def search_pairs(pairs, iteration: Iteration, text: str):
    """The pairs whose question or either answer holds `text`: PostgreSQL full-text search (English stemming,
    web-search syntax: "quoted phrases", or, -not; GIN indexes: migration pair_search_indexes); on other
    databases, a text that holds every word as a substring. Either way all the words are in one text."""
    answers = Response.objects.filter(iteration=iteration)
    if connections[pairs.db].vendor == "postgresql":
        query = SearchQuery(text, config=SEARCH_CONFIG, search_type="websearch")
        questions = Instruction.objects.annotate(words=SearchVector("question", config=SEARCH_CONFIG))
        questions = questions.filter(words=query)
        answers = answers.annotate(words=SearchVector("text", config=SEARCH_CONFIG)).filter(words=query)
    else:
        words = text.split()
        questions = Instruction.objects.filter(*[Q(question__icontains=word) for word in words])
        answers = answers.filter(*[Q(text__icontains=word) for word in words])
    return pairs.filter(Q(instruction__in=questions) | Q(chosen__in=answers) | Q(rejected__in=answers))


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
    if (filters.get("q") or "").strip():
        pairs = search_pairs(pairs, iteration, filters["q"].strip())
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


# --- claims as the pages show them --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewEntry:
    """One review in a claim's history."""

    reviewer: str  # username
    decision: str  # its label
    created_at: datetime
    note: str


@dataclass(frozen=True)
class ClaimView:
    """A claim with its effective verdict: the latest decisive review's, else the labeler's."""

    pk: int
    index: int
    text: str
    question: str
    response_id: int
    divided_by: str
    effective_accepted: bool | None
    decided_by: str | None  # "reviewer", "labeler" or None
    p_yes: float | None  # the labeler's
    decider: str | None  # username of the latest decisive review's reviewer
    history: list[ReviewEntry]


def _claim_view(claim: Claim, verdict: EffectiveVerdict, history: list[Review]) -> ClaimView:
    decisive = [r for r in history if r.decision != Decision.UNSURE]
    return ClaimView(
        pk=claim.pk,
        index=claim.index,
        text=claim.text,
        question=claim.question,
        response_id=claim.response_id,
        divided_by=claim.divided_by,
        effective_accepted=verdict.accepted,
        decided_by=verdict.decided_by,
        p_yes=verdict.p_yes,
        decider=decisive[-1].reviewer.get_username() if decisive else None,
        history=[
            ReviewEntry(r.reviewer.get_username(), r.get_decision_display(), r.created_at, r.note) for r in history
        ],
    )


def claim_views(iteration: Iteration, claims) -> list[ClaimView]:
    """The claims (a queryset), each with its effective verdict, who decided it and its review history."""
    claims = list(with_labeler_verdict(claims, iteration.labeler))
    reviews = list(Review.objects.filter(claim__in=claims).select_related("reviewer").order_by("created_at", "pk"))
    decisions = [(review.claim_id, review.decision) for review in reviews]
    verdicts = effective_verdicts([(c.pk, c.response_id, c.labeler_accepted, c.p_yes) for c in claims], decisions)
    history = {}
    for review in reviews:
        history.setdefault(review.claim_id, []).append(review)
    return [_claim_view(claim, verdicts[claim.pk], history.get(claim.pk, [])) for claim in claims]


# --- the pair page ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One answer of the pair page: what the page shows of the response, its heading and its claims."""

    pk: int
    text: str
    score: int | None
    status: str
    error: str
    heading: str
    claims: list[ClaimView]


@dataclass(frozen=True)
class PairView:
    """Two answers of one instruction side by side, and the state of their pair after reviews."""

    instruction: Instruction
    left: Side
    right: Side
    row: PreferencePair | None  # the stored pair of these two answers, if they still are one
    flipped: bool  # the pair is now stored the other way round
    tie: bool
    other_pairs: list[PreferencePair]  # the instruction's other pairs
    open: bool  # the iteration takes reviews
    changed: list[ClaimView]  # the claims read: all of them, or those asked for


def pair_responses(iteration: Iteration, left: int, right: int) -> tuple[Response, Response]:
    """The two answers, with their instruction; 404 unless they answer one instruction of this iteration."""
    responses = {
        r.pk: r
        for r in Response.objects.filter(iteration=iteration, pk__in=[left, right]).select_related("instruction")
    }
    if len(responses) != 2 or responses[left].instruction_id != responses[right].instruction_id:
        raise Http404("not two answers to one instruction of this iteration")
    return responses[left], responses[right]


def _side(response: Response, heading: str, claims: list[ClaimView]) -> Side:
    return Side(
        pk=response.pk,
        text=response.text,
        score=response.score,
        status=response.status,
        error=response.error,
        heading=heading,
        claims=[c for c in claims if c.response_id == response.pk],
    )


def pair_view(iteration: Iteration, left: int, right: int, claim_ids: list[int] | None = None) -> PairView:
    """The pair page of answers `left` and `right`. `claim_ids`: read only these claims (as `changed`), for the
    answer to a decision, which swaps in just what changed."""
    left, right = pair_responses(iteration, left, right)
    claims = Claim.objects.filter(response__in=[left, right]).order_by("index")
    if claim_ids is not None:
        claims = claims.filter(pk__in=claim_ids)
    claims = claim_views(iteration, claims)
    pairs = list(PreferencePair.objects.filter(iteration=iteration, instruction=left.instruction_id).order_by("pk"))
    row = next((p for p in pairs if {p.chosen_id, p.rejected_id} == {left.pk, right.pk}), None)
    flipped = row is not None and row.chosen_id == right.pk
    left_heading, right_heading = HEADINGS["flipped" if flipped else "paired" if row else "unpaired"]
    return PairView(
        instruction=left.instruction,
        left=_side(left, left_heading, claims),
        right=_side(right, right_heading, claims),
        row=row,
        flipped=flipped,
        tie=left.score is not None and left.score == right.score,
        other_pairs=[p for p in pairs if p is not row],
        open=iteration.status == IterationStatus.REVIEWING,
        changed=claims,
    )


# --- the spot-check queue -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueItem:
    """The queue's next claim, with its answer and instruction and the labeler's verdict on it."""

    claim: ClaimView
    response: Response
    instruction: Instruction
    p_no: float


@dataclass(frozen=True)
class QueueView:
    """The spot-check queue's next claim (None when none is left) and its counters."""

    item: QueueItem | None
    waiting: int  # up to `window`
    window: int
    done: int  # claims of the iteration the reviewer reviewed
    open: bool  # the iteration takes reviews


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


def queue_view(iteration: Iteration, reviewer) -> QueueView:
    """The queue as `reviewer` sees it: the next claim, how many wait, and how many they reviewed."""
    queue = spot_check_queue(iteration)
    item = None
    if queue:
        verdict = Verdict.objects.select_related("claim__response__instruction").get(pk=queue[0])
        claim = verdict.claim
        # An unreviewed claim: its effective verdict is the labeler's.
        labeler = EffectiveVerdict(claim.response_id, verdict.accepted, "labeler", verdict.p_yes)
        view = _claim_view(claim, labeler, history=[])
        item = QueueItem(view, claim.response, claim.response.instruction, verdict.p_no)
    # The reviewer's own count: it grows with one person's work, not with the iteration.
    done = Review.objects.filter(reviewer=reviewer, iteration=iteration).aggregate(n=Count("claim", distinct=True))
    return QueueView(
        item=item,
        waiting=len(queue),
        window=QUEUE_WINDOW,
        done=done["n"],
        open=iteration.status == IterationStatus.REVIEWING,
    )
