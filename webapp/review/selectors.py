"""The review pages' read queries. Each returns plain frozen dataclasses, so what a page shows beyond a model's
own fields (a claim's effective verdict, who decided it, a side's heading) is declared here once instead of
being set as attributes on model instances by the views.

Writes live in webapp.review.service (the review service); these only read.
"""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from django.db.models import BooleanField, Exists, OuterRef, Q
from django.db.models.expressions import RawSQL
from django.http import Http404

from labeling.calibration import accepts
from webapp.iterations.config import second_labeler
from webapp.iterations.counts import counts_of
from webapp.models import (
    DECISIVE,
    REVIEW_ROW,
    Claim,
    Decision,
    EffectiveVerdict,
    Instruction,
    InstructionSource,
    Iteration,
    IterationStatus,
    PreferencePair,
    Response,
    Review,
    Verdict,
    effective_verdicts,
    standing_decisions,
    with_labeler_verdict,
)
from webapp.review import instruction_rows, queue_rows
from webapp.review.instruction_rows import ReviewRow
from webapp.review.search import search_pairs

PAGE_SIZE = 25
# The list counts at most this many matches, so a count never walks a whole iteration (an index range of 1,000
# rows is a few milliseconds); under it, the count is exact (200 read "More than 200" for 248).
COUNT_CAP = 1000
# A search's matches are read through the text index, and a filter on reviews or sources joins each pair to its
# answers or instruction: dearer per row, so fewer are counted (counting 1,001 filtered pairs took 9-14 ms at 1M).
JOINED_COUNT_CAP = 200
# The spot-check queue stratifies this many of the most uncertain unreviewed verdicts.
QUEUE_WINDOW = 100
QUEUE_SHOWN = 5  # the claims a queue page shows at once, for j/k to move between


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
LIST_QUESTION = 90  # characters of a pair's question the list shows
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
class ListedPair:
    """A row of the pair list: what it shows of a pair, its answers and its instruction (their texts and
    timestamps stay in the database). Read as plain values: building each row's pair, answers and instruction
    as model instances was a tenth of the list's CPU."""

    pk: int
    score_gap: int
    excluded: bool
    chosen_id: int
    rejected_id: int
    question_shown: str  # cut to LIST_QUESTION characters
    source: str
    chosen_score: int | None
    rejected_score: int | None
    reviewed: bool  # either answer has a review

    FIELDS = (
        "pk", "score_gap", "excluded", "chosen_id", "rejected_id", "instruction__question", "instruction__source",
        "chosen__score", "rejected__score", "chosen__reviewed", "rejected__reviewed",
    )  # fmt: skip

    @classmethod
    def of(cls, pk, gap, excluded, chosen, rejected, question, source, chosen_score, rejected_score, *reviewed):
        """A row from a FIELDS tuple; the question cut here (the template's truncatechars cost a tenth of the
        page)."""
        shown = question if len(question) <= LIST_QUESTION else question[: LIST_QUESTION - 1] + "…"
        return cls(pk, gap, excluded, chosen, rejected, shown, source, chosen_score, rejected_score, any(reviewed))


@dataclass(frozen=True)
class PairPage:
    """One keyset page of the matching pairs, the query strings of the next and first pages, a capped count."""

    pairs: list[ListedPair]
    next_cursor: str  # "" on the last page
    next_query: str
    first_query: str
    matching: int  # at most count_cap + 1 (exact when count_cap is None)
    count_cap: int | None  # None: `matching` is exact, read from the iteration's stored counts


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
    return list(InstructionSource.objects.filter(instructions__gt=0).values_list("name", flat=True))


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
        pairs = search_pairs(pairs, iteration, filters["q"].strip())  # SearchRefused: the view says why
    return pairs


def pair_page(iteration: Iteration, filters: dict, query) -> PairPage:
    """The page of matching pairs after the cursor `filters["after"]`; `query` (the request's GET) carries the
    filters into the links to the next and first pages."""
    order, after = SORTS[filters["sort"] or "-gap"]
    matching = filter_pairs(iteration, filters)
    count, cap = matching_count(iteration, filters, matching)
    page = matching.order_by(*order)
    if filters["after"]:
        page = page.filter(after(*map(int, filters["after"].split("."))))
    page = [ListedPair.of(*row) for row in page.values_list(*ListedPair.FIELDS)[: PAGE_SIZE + 1]]
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
        matching=count,
        count_cap=cap,
    )


def matching_count(iteration: Iteration, filters: dict, matching) -> tuple[int, int | None]:
    """How many pairs match, and the cap their count stopped at (None: exact). Unfiltered or filtered on
    exclusion alone, the iteration's stored counts give it exactly for one row's read (counting 1,001 pairs was
    the dearest part of the list's first page in the database); otherwise the matches are counted up to a cap."""
    joined = (filters.get("q") or "").strip() or filters["reviewed"] or filters["source"]
    if not (joined or filters["min_gap"] or filters["max_gap"]):
        stored = counts_of([iteration])[iteration.pk]
        by_exclusion = {"yes": stored.excluded, "no": stored.pairs - stored.excluded}
        return by_exclusion.get(filters["excluded"], stored.pairs), None
    cap = JOINED_COUNT_CAP if joined else COUNT_CAP
    return matching.order_by()[: cap + 1].count(), cap


# --- claims as the pages show them --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewEntry:
    """One review in a claim's history."""

    reviewer: str  # username
    decision: str  # its label
    created_at: datetime
    note: str
    undone: bool  # an undo took it back
    review_id: int
    reviewer_id: int
    standing: bool  # a decision still in force: neither an undo nor undone


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


def _claim_view(claim: Claim | queue_rows.ShownClaim, verdict: EffectiveVerdict, history: list[ReviewRow]) -> ClaimView:
    undone = {r.undoes_id for r in history if r.undoes_id is not None}
    decisive = [r for r in history if r.decision in DECISIVE and r.pk not in undone]
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
        decider=decisive[-1].reviewer if decisive else None,
        history=[
            ReviewEntry(
                r.reviewer,
                Decision(r.decision).label,
                r.created_at,
                r.note,
                r.pk in undone,
                review_id=r.pk,
                reviewer_id=r.reviewer_id,
                standing=r.undoes_id is None and r.pk not in undone,
            )
            for r in history
        ],
    )


def _histories(claim_ids: list[int]) -> dict[int, list[ReviewRow]]:
    """The claims' reviews, oldest first, by claim id."""
    history = {}
    for row in instruction_rows.claim_reviews(claim_ids):
        history.setdefault(row.claim_id, []).append(row)
    return history


def _decisions(history: dict[int, list[ReviewRow]]) -> list[tuple]:
    """The reviews of `_histories` as REVIEW_ROW rows, each claim's in the order they were made."""
    return [r.decision_row for reviews in history.values() for r in reviews]


def claim_views(iteration: Iteration, claims) -> list[ClaimView]:
    """The claims (a queryset), each with its effective verdict, who decided it and its review history."""
    claims = list(with_labeler_verdict(claims, iteration.labeler, iteration.margin))
    history = _histories([c.pk for c in claims])
    rows = [(c.pk, c.response_id, c.labeler_accepted, c.p_yes) for c in claims]
    verdicts = effective_verdicts(rows, _decisions(history))
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
class OwnDecision:
    """A reviewer's latest decision still in force on a page, which its undo button takes back."""

    review_id: int
    decision: str  # its label
    claim_id: int
    claim_text: str


@dataclass(frozen=True)
class PairView:
    """Two answers of one instruction side by side, and the state of their pair after reviews."""

    instruction: Instruction
    left: Side
    right: Side
    row: PreferencePair | None  # the stored pair of these two answers, if they still are one
    flipped: bool  # the right answer now scores higher: the pair now stands the other way round
    tie: bool
    other_pairs: list[PreferencePair]  # the instruction's other pairs
    open: bool  # the iteration takes reviews
    changed: list[ClaimView]  # the claims read: all of them, or those asked for
    last_decision: OwnDecision | None  # the reviewer's, on these two answers' claims


def pair_responses(iteration: Iteration, left: int, right: int) -> tuple[Response, Response]:
    """The two answers, with their instruction; 404 unless they answer one instruction of this iteration."""
    return _two_answers(Response.objects.filter(iteration=iteration), left, right)


def numbered_pair(number: int, left: int, right: int) -> tuple[Iteration, Response, Response]:
    """`pair_responses` of iteration `number`, with the iteration, in one query (a decision's first read)."""
    answers = Response.objects.filter(iteration__number=number).select_related("iteration")
    left, right = _two_answers(answers, left, right)
    return left.iteration, left, right


def _two_answers(answers, left: int, right: int) -> tuple[Response, Response]:
    responses = {r.pk: r for r in answers.filter(pk__in=[left, right]).select_related("instruction")}
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


def pair_view(
    iteration: Iteration,
    left: int,
    right: int,
    claim_ids: list[int] | None = None,
    reviewer=None,
    just_made: Review | None = None,
) -> PairView:
    """The pair page of answers `left` and `right` as `reviewer` sees it. `claim_ids`: read only these claims
    (as `changed`), for the answer to a decision, which swaps in just what changed. `just_made`: the decision
    `reviewer` just made here, so their latest, which undo takes back (saves reading it again)."""
    left, right = pair_responses(iteration, left, right)
    claims = Claim.objects.filter(response__in=[left, right]).order_by("index")
    if claim_ids is not None:
        claims = claims.filter(pk__in=claim_ids)
    claims = claim_views(iteration, claims)
    pairs = list(PreferencePair.objects.filter(iteration=iteration, instruction=left.instruction_id).order_by("pk"))
    row = next((p for p in pairs if {p.chosen_id, p.rejected_id} == {left.pk, right.pk}), None)
    if just_made is not None and just_made.decision != Decision.UNDO:
        own = _own_decision(just_made)
    elif claim_ids is None:  # the whole page: its claims' histories hold all their reviews
        own = _own_latest(claims, reviewer)
    else:
        own = last_decision(Review.objects.filter(claim__response__in=[left, right]), reviewer)
    return _pair_of(iteration, left, right, claims, pairs, row, own)


def pair_after(iteration: Iteration, left: Response, right: Response, decided, reviewer) -> PairView:
    """The answer to a decision (or undo) on the pair page of `left` and `right` (from `pair_responses`): its
    claim, both headings and the pair's status, from what the review's rebuild (`decided.rebuilt`) already
    holds, so nothing it just wrote is read again. A review that rebuilt nothing is shown by `pair_view`."""
    review, rebuilt = decided.review, decided.rebuilt
    if rebuilt is None:
        return pair_view(iteration, left.pk, right.pk, [review.claim_id], reviewer, just_made=review)
    scores = {answer.pk: answer.score for answer in rebuilt.rows.answers}
    left.score, right.score = scores.get(left.pk, left.score), scores.get(right.pk, right.score)
    reviews = [r for r in rebuilt.rows.reviews if r.claim_id == review.claim_id]
    verdict = effective_verdicts(rebuilt.rows.claims, [r.decision_row for r in rebuilt.rows.reviews])
    claims = [_claim_view(review.claim, verdict[review.claim_id], reviews)]
    row = next((p for p in rebuilt.pairs if {p.chosen_id, p.rejected_id} == {left.pk, right.pk}), None)
    if review.decision != Decision.UNDO:
        own = _own_decision(review)
    else:
        own = last_decision(Review.objects.filter(claim__response__in=[left, right]), reviewer)
    return _pair_of(iteration, left, right, claims, rebuilt.pairs, row, own)


def _pair_of(iteration, left, right, claims, pairs, row, own) -> PairView:
    scored = left.score is not None and right.score is not None
    flipped = scored and left.score < right.score
    left_heading, right_heading = HEADINGS["flipped" if flipped else "paired" if row else "unpaired"]
    return PairView(
        instruction=left.instruction,
        left=_side(left, left_heading, claims),
        right=_side(right, right_heading, claims),
        row=row,
        flipped=flipped,
        tie=scored and left.score == right.score,
        other_pairs=[p for p in pairs if p is not row],
        open=iteration.status == IterationStatus.REVIEWING,
        changed=claims,
        last_decision=own,
    )


def _own_latest(claims: list[ClaimView], reviewer) -> OwnDecision | None:
    """`last_decision` read from the histories of all the page's claims, which hold every review of them."""
    mine = [
        (entry.created_at, entry.review_id, entry, claim)
        for claim in claims
        for entry in claim.history
        if entry.standing and entry.reviewer_id == getattr(reviewer, "pk", None)
    ]
    if not mine:
        return None
    *_, entry, claim = max(mine, key=lambda row: row[:2])
    return OwnDecision(entry.review_id, entry.decision, claim.pk, claim.text)


def last_decision(reviews, reviewer) -> OwnDecision | None:
    """`reviewer`'s latest decision still in force among `reviews` (a queryset), the one undo takes back."""
    review = reviews.standing().filter(reviewer=reviewer).select_related("claim").order_by("-created_at", "-pk").first()
    return None if review is None else _own_decision(review)


def _own_decision(review: Review) -> OwnDecision:
    return OwnDecision(review.pk, review.get_decision_display(), review.claim_id, review.claim.text)


# --- the spot-check queue -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueItem:
    """A claim of the queue, with its answer and instruction, the labeler's p_no, and a pair page showing it."""

    claim: ClaimView
    response: queue_rows.ShownAnswer
    instruction: queue_rows.ShownInstruction
    p_no: float
    pair: tuple[int, int] | None  # (left, right) answers of that pair page


@dataclass(frozen=True)
class Outcome:
    """What one of a reviewer's reviews did: the claim's effective verdict and its answer's score before and
    after it (None: no verdict, no score), and whether it is still in force (so undo can take it back)."""

    review_id: int
    decision: str  # its label
    is_undo: bool
    undone: bool  # taken back by a later undo
    claim: Claim
    verdict_before: bool | None
    verdict_after: bool | None
    score_before: int | None
    score_after: int | None
    pair: tuple[int, int] | None  # (left, right) answers of a pair page showing the claim


@dataclass(frozen=True)
class QueueView:
    """The spot-check queue's next claims (none when none is left), its counters, and what the reviewer's
    latest decision here did."""

    items: list[QueueItem]
    waiting: int  # up to `window`
    window: int
    done: int  # claims of the iteration the reviewer reviewed
    open: bool  # the iteration takes reviews
    outcome: Outcome | None

    @property
    def item(self) -> QueueItem | None:
        """The claim first in line."""
        return self.items[0] if self.items else None


def spot_check_queue(iteration: Iteration, window: int = QUEUE_WINDOW) -> list[int]:
    """Verdict ids of the iteration's unreviewed claims (none of whose reviews stands: undoing a decision puts
    its claim back) in serving order: most uncertain labeler verdict (smallest |p_yes − p_no|) first, the
    `window` most uncertain stratified (see `stratify`) so a reviewer does not see ten claims of one answer in
    a row. With a second labeler, the claims the two disagree on come before all others."""
    rows = queue_rows.window(iteration.pk, iteration.labeler, window, second_labeler(iteration))
    reviewed = reviewed_per_instruction(iteration, rows)
    disagreed = [row[:3] for row in rows if row[3]]
    return stratify(disagreed, reviewed) + stratify([row[:3] for row in rows if not row[3]], reviewed)


def reviewed_per_instruction(iteration: Iteration, rows: list[tuple]) -> Counter:
    """How many claims of each of the rows' instructions stand reviewed: the round-robin goes on from there
    across requests, so an instruction whose claim was just decided waits for every other one's turn (it
    started afresh on every request, and served the same claim of the same picture five times in a row)."""
    # Asked for standing reviews in SQL, the planner misjudged the anti-join as one row and walked every review
    # of the iteration (73 ms at 1M claims with 1% reviewed, growing with the reviews), so undone and undo are
    # told apart here.
    reviews = queue_rows.reviews_of_instructions(iteration.pk, {row[2] for row in rows})
    undone = {undoes for _, _, undoes, _ in reviews if undoes is not None}
    stands = {(claim, instruction) for pk, claim, undoes, instruction in reviews if undoes is None and pk not in undone}
    return Counter(instruction for _, instruction in stands)


def stratify(rows: list[tuple[int, int, int]], reviewed: Counter | None = None) -> list[int]:
    """(verdict, answer, instruction) rows in uncertainty order, taken round-robin: every instruction's first
    claim before any instruction's second, and within an instruction every answer's first before any second.
    `reviewed`: claims of an instruction decided already, which count as its turns taken."""
    per_answer, per_instruction = Counter(), Counter(reviewed or {})
    by_answer = []
    for position, (verdict, answer, instruction) in enumerate(rows):
        by_answer.append((per_answer[answer], position, verdict, instruction))
        per_answer[answer] += 1
    ranked = []
    for _, position, verdict, instruction in sorted(by_answer):
        ranked.append((per_instruction[instruction], position, verdict))
        per_instruction[instruction] += 1
    return [verdict for *_, verdict in sorted(ranked)]


def queue_view(iteration: Iteration, reviewer, last_review: int | None = None) -> QueueView:
    """The queue as `reviewer` sees it: the next claims, how many wait, how many they reviewed, and what their
    review `last_review` did."""
    waiting = spot_check_queue(iteration)
    shown = queue_rows.shown(waiting[:QUEUE_SHOWN])
    items = []
    if shown:
        # Claims back in the queue after an undo carry their (undone) reviews.
        history = _histories([c.pk for c in shown])
        rows = [(c.pk, c.response_id, accepts(c.p_yes, c.p_no, iteration.margin), c.p_yes) for c in shown]
        effective = effective_verdicts(rows, _decisions(history))
        links = queue_rows.pair_links({c.response_id for c in shown})
        for c in shown:
            view = _claim_view(c, effective[c.pk], history.get(c.pk, []))
            items.append(QueueItem(view, c.answer, c.instruction, c.p_no, links.get(c.response_id)))
    return QueueView(
        items=items,
        waiting=len(waiting),
        window=QUEUE_WINDOW,
        done=queue_rows.decided_by(reviewer.pk, iteration.pk),  # grows with one person's work, not the iteration
        open=iteration.status == IterationStatus.REVIEWING,
        outcome=outcome(iteration, reviewer, last_review) if last_review else None,
    )


def outcome(iteration: Iteration, reviewer, review_id: int) -> Outcome | None:
    """What `reviewer`'s review `review_id` of this iteration did; None when they made no such review."""
    review = (
        Review.objects.filter(pk=review_id, iteration=iteration, reviewer=reviewer)
        .select_related("claim__response")
        .first()
    )
    if review is None:
        return None
    claim = review.claim
    rows = list(Review.objects.filter(claim=claim).order_by("created_at", "pk").values_list(*REVIEW_ROW))
    made = [row[0] for row in rows].index(review.pk) + 1
    verdict = Verdict.objects.filter(claim=claim, labeler=iteration.labeler).values_list("p_yes", "p_no").first()
    labeler = None if verdict is None else accepts(*verdict, iteration.margin)

    def verdict(reviews):
        decision = standing_decisions(reviews).get(claim.pk)
        return labeler if decision is None else decision == Decision.CORRECT

    before, after = verdict(rows[: made - 1]), verdict(rows[:made])
    score_after = claim.response.score
    return Outcome(
        review_id=review.pk,
        decision=review.get_decision_display(),
        is_undo=review.decision == Decision.UNDO,
        undone=any(row[3] == review.pk for row in rows[made:]),
        claim=claim,
        verdict_before=before,
        verdict_after=after,
        score_before=None if score_after is None else score_after + (after is False) - (before is False),
        score_after=score_after,
        pair=queue_rows.pair_links([claim.response_id]).get(claim.response_id),
    )
