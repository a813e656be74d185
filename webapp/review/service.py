"""Reviews: a human's decision on a claim, and what follows from it in the same transaction.

A decisive review (correct / hallucinated) changes the claim's effective verdict, so the response's cached
score and its instruction's pairs are rebuilt at once with labeling.combine, re-using the length ratio r that
the iteration's combine stage chose (one instruction's few pairs would pick another r). "Unsure" leaves the
previous decision standing: nothing to recompute. An undo is a review too, appended: it names one of the
reviewer's own decisions, which then no longer counts, so the claim's verdict, the score and the pairs return
to what they were before it. Reviews are taken only while the iteration waits at its review gate: before it
the pairs do not exist yet, after it they have been trained on.

Staff may also change the verdict rule's margin there (`apply_margin`): every answer is re-scored and every
pair rebuilt under it, reviews still winning over the labeler, and the change is recorded on the iteration.
"""

from collections import Counter
from dataclasses import asdict, dataclass

from django.db import connection, transaction
from django.utils import timezone

from labeling.calibration import PairChanges, pair_changes
from labeling.combine import Pair, ScoredResponse, combine_pairs, make_pairs
from webapp.accounts import audit
from webapp.accounts.actors import actor_for
from webapp.iterations import counts
from webapp.iterations.config import config
from webapp.models import (
    CLAIM_DECISIONS,
    AuditAction,
    AuditItem,
    AuditSample,
    Claim,
    Decision,
    Iteration,
    IterationStatus,
    PreferencePair,
    Response,
    ResponseStatus,
    Review,
    WithdrawnPair,
    effective_verdicts,
    response_scores,
    standing_decisions,
)
from webapp.review import instruction_rows


class ReviewClosed(Exception):
    """The iteration is not at its review gate, so its verdicts and pairs are not open to change."""


class CannotUndo(Exception):
    """The review named is an undo, is already undone, or is someone else's."""


class _NoLengthRatio(Exception):
    """The iteration was combined before its stage recorded the length ratio r, which a rebuild needs."""


def _lock_open(iteration_id: int, instruction_id: int) -> Iteration:
    """Lock what a review changes, for this transaction: the instruction whose answers and pairs it rebuilds.

    The iteration is only share-locked: reviews of other instructions run side by side, while approving the
    gate (an UPDATE of the iteration) waits for the reviews in flight, and a review that waited for the
    approval finds the gate closed. Two reviews of one instruction take turns, so neither rebuild is lost.
    Both locks are taken in one statement; SQLite, which writes one transaction at a time, needs neither.
    """
    locks = " FOR SHARE OF i FOR NO KEY UPDATE OF s" if connection.features.has_select_for_update else ""
    iteration = next(
        iter(
            Iteration.objects.raw(
                f"SELECT i.* FROM webapp_iteration i, webapp_instruction s WHERE i.id = %s AND s.id = %s{locks}",
                [iteration_id, instruction_id],
            )
        ),
        None,
    )
    if iteration is None or iteration.status != IterationStatus.REVIEWING:
        raise ReviewClosed("reviews are taken only while the iteration is at its review gate")
    if "length_ratio" not in (iteration.metrics or {}):
        raise _NoLengthRatio
    return iteration


def _in_review(iteration_id: int, work):
    """`work()` in a transaction. An iteration combined before r was recorded gets it first, outside the review's
    locks (storing it updates the iteration, which two reviews holding the share lock could not both do)."""
    try:
        with transaction.atomic():
            return work()
    except _NoLengthRatio:
        ensure_length_ratio(iteration_id)
    with transaction.atomic():
        return work()


@dataclass
class Rebuilt:
    """What a review's rebuild changed in the iteration's counts, and the instruction as it left it: its rows
    (answers with their new scores) and its stored pairs, which the review's HTMX answer shows without
    reading them again."""

    change: counts.Tally
    rows: instruction_rows.InstructionRows
    pairs: list[PreferencePair]


@dataclass
class Decided:
    """A review appended, and the rebuild it made (None for one that changes no verdict: unsure, or the undo
    of an unsure)."""

    review: Review
    rebuilt: Rebuilt | None


def record_review(
    claim: Claim, reviewer, decision: str, note: str = "", audit_sample: AuditSample | None = None
) -> Review:
    """Append a review; when it is decisive, re-score the claim's response and rebuild its instruction's pairs.
    `audit_sample`: the audit sample whose page it was made on (the claim must be one of its drawn claims)."""
    return decide(claim, reviewer, decision, note, audit_sample).review


def decide(claim: Claim, reviewer, decision: str, note: str = "", audit_sample: AuditSample | None = None) -> Decided:
    """`record_review`, returning the rebuild too. `claim` comes with its response (select_related)."""
    if decision not in CLAIM_DECISIONS:
        raise ValueError(f"unknown decision {decision!r}: one of {', '.join(CLAIM_DECISIONS)} (undo_review undoes)")
    if audit_sample is not None and not AuditItem.objects.filter(sample=audit_sample, claim=claim).exists():
        raise ValueError(f"claim {claim.pk} was not drawn in audit sample {audit_sample.pk}")
    response = claim.response

    def work():
        iteration = _lock_open(response.iteration_id, response.instruction_id)
        review = Review.objects.create(claim=claim, reviewer=reviewer, decision=decision, note=note, audit=audit_sample)
        return Decided(review, _rebuild(iteration, response.instruction_id, review, decision != Decision.UNSURE))

    return _in_review(response.iteration_id, work)


def _rebuild(iteration: Iteration, instruction_id: int, review: Review, decisive: bool) -> Rebuilt | None:
    if not decisive:
        return None
    rebuilt = rebuild_pairs(iteration, instruction_id, review.pk)
    counts.add(iteration, rebuilt.change)
    return rebuilt


def undo_review(review: Review, reviewer) -> Review:
    """Append `reviewer`'s undo of their own `review`; when that was decisive, re-score and rebuild as a decision
    would. `review` comes with its claim's response (select_related)."""
    return take_back(review, reviewer).review


def take_back(review: Review, reviewer) -> Decided:
    """`undo_review`, returning the rebuild too."""
    if review.reviewer_id != reviewer.pk:
        raise CannotUndo("only the reviewer who made a decision can undo it")
    if review.decision == Decision.UNDO:
        raise CannotUndo("an undo cannot be undone: decide the claim again")
    instruction_id = review.claim.response.instruction_id

    def work():
        iteration = _lock_open(review.iteration_id, instruction_id)
        if Review.objects.filter(undoes=review).exists():
            raise CannotUndo("this decision is already undone")
        undo = Review.objects.create(
            claim=review.claim, iteration=iteration, reviewer=reviewer, decision=Decision.UNDO, undoes=review
        )
        return Decided(undo, _rebuild(iteration, instruction_id, undo, review.decision != Decision.UNSURE))

    return _in_review(review.iteration_id, work)


def set_excluded(pair: PreferencePair, user, excluded: bool) -> None:
    """Exclude a pair from training (or include it again); the flag survives rebuilds of its instruction. The
    change is on the audit trail (reviews are their own)."""

    def work():
        iteration = _lock_open(pair.iteration_id, pair.instruction_id)
        was = PreferencePair.objects.filter(pk=pair.pk).values_list("excluded", flat=True).first()
        pair.excluded, pair.excluded_by = excluded, (user if excluded else None)
        PreferencePair.objects.filter(pk=pair.pk).update(excluded=pair.excluded, excluded_by=pair.excluded_by)
        audit.record(
            AuditAction.EXCLUDE if excluded else AuditAction.INCLUDE,
            iteration=iteration,
            target=f"pair {pair.pk}",
            actor=actor_for(user),
            chosen=pair.chosen_id,
            rejected=pair.rejected_id,
        )
        if was is not None and was != excluded:  # None: a rebuild removed the pair meanwhile
            counts.add(iteration, counts.Tally(excluded=1 if excluded else -1))

    _in_review(pair.iteration_id, work)


def rebuild_pairs(iteration: Iteration, instruction_id: int, latest: int | None = None) -> Rebuilt:
    """Re-score an instruction's responses from effective verdicts and rebuild its pairs. Call in a transaction.

    Its `change` is what that did to the iteration's counts; `latest`, the review just appended, is the one
    whose change in agreement with the labeler it counts.

    Responses without claims (imported pairs, self-reward iterations) have no verdicts to score by: their
    pairs are the only preference known and are left alone rather than rebuilt into nothing.
    """
    change = counts.Tally()
    rows = instruction_rows.read(iteration, instruction_id)
    if not rows.claims:
        return Rebuilt(change, rows, sorted(_stored_pairs(iteration, [instruction_id]), key=lambda p: p.pk))
    decisions = [review.decision_row for review in rows.reviews]
    verdicts = effective_verdicts(rows.claims, decisions).values()
    if latest is not None:
        labeler_accepted = {claim: accepted for claim, _, accepted, _ in rows.claims}
        change.decided_claims(standing_decisions(decisions), labeler_accepted)
        before = [row for row in decisions if row[0] != latest]
        change.decided_claims(standing_decisions(before), labeler_accepted, sign=-1)
    rejected = Counter(v.response_id for v in verdicts if v.accepted is False)
    repeats = config(iteration)["reject_repeats"]
    for r in rows.answers:
        r.n_rejected = rejected[r.pk] + (r.repeated_claims if repeats else 0)
    changed = [r for r in rows.answers if r.score != -r.n_rejected]
    for r in changed:
        change.score_moved(r.score, -r.n_rejected)
        r.score = -r.n_rejected
    if changed:
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {Response._meta.db_table} SET score = %s WHERE id = %s", [(r.score, r.pk) for r in changed]
            )
    tally, pairs = _replace_pairs(iteration, [instruction_id], _pairs_of(iteration, rows.answers))
    return Rebuilt(change + tally, rows, pairs)


class BadMargin(ValueError):
    """A margin outside [−1, 1], where p_yes − p_no lives."""


def apply_margin(iteration_id: int, user, margin: float) -> PairChanges:
    """Make `margin` the iteration's verdict rule (accepted when p_yes > p_no + margin), re-score every answer and
    rebuild every pair under it, and record who changed it from what, when, and what it did to the pairs."""
    if not -1.0 <= margin <= 1.0:
        raise BadMargin(f"a margin is between -1 and 1 (p_yes − p_no lies there), not {margin}")
    with transaction.atomic():
        # The whole iteration changes: wait for the reviews in flight (their share locks) and keep new ones out.
        iteration = Iteration.objects.select_for_update().filter(pk=iteration_id).first()
        if iteration is None or iteration.status != IterationStatus.REVIEWING:
            raise ReviewClosed("reviews are taken only while the iteration is at its review gate")
        old = list(PreferencePair.objects.filter(iteration=iteration).values_list("chosen", "rejected", "score_gap"))
        previous = iteration.margin
        Iteration.objects.filter(pk=iteration.pk).update(margin=margin)
        iteration.margin = margin
        pairs = rebuild_all_pairs(iteration)
        changes = pair_changes(old, [(p.chosen_id, p.rejected_id, p.score_gap) for p in pairs])
        record = {
            "margin": margin,
            "previous": previous,
            "by": user.get_username(),
            "at": timezone.now().isoformat(),
            "pairs": asdict(changes),
        }
        audit.record(
            AuditAction.MARGIN, iteration=iteration, target=f"margin {margin}", previous=previous, pairs=record["pairs"]
        )
        metrics = iteration.metrics or {}
        iteration.metrics = metrics | {"margins": [*metrics.get("margins", []), record]}
        iteration.save(update_fields=["metrics"])
        counts.refresh(iteration)  # every score, pair and agreement may have moved
    return changes


def pairs_under(iteration: Iteration, margin: float | None = None) -> list[Pair]:
    """The iteration's pairs as `rebuild_all_pairs` would make them under `margin` (None: its own): the "what if"
    of a margin."""
    return _scored_pairs(iteration, margin)[1]


def rebuild_all_pairs(iteration: Iteration) -> list[Pair]:
    """`rebuild_pairs` for every instruction at once. Call in a transaction, the iteration locked."""
    responses, pairs = _scored_pairs(iteration, None)
    changed = [r for r in responses if r.score != -r.n_rejected]
    for r in changed:
        r.score = -r.n_rejected
    Response.objects.bulk_update(changed, ["score"], batch_size=500)
    _replace_pairs(iteration, _claimed_instructions(iteration), pairs)
    return pairs


def _claimed_instructions(iteration: Iteration):
    """The iteration's instructions whose labeled answers have claims (a subquery): those that pairs follow from
    verdicts; the others' pairs (imported ones) are the only preference known and are left alone."""
    labeled = Claim.objects.filter(response__iteration=iteration, response__status=ResponseStatus.LABELED)
    return labeled.values("response__instruction")


def _scored_pairs(iteration: Iteration, margin: float | None) -> tuple[list[Response], list[Pair]]:
    """The labeled answers of instructions with claims, scored from effective verdicts under `margin`, and their
    pairs: the combine stage's k, seed and r, as `rebuild_pairs` makes them."""
    labeled = Response.objects.filter(iteration=iteration, status=ResponseStatus.LABELED)
    claimed = labeled.filter(instruction__in=_claimed_instructions(iteration))
    responses = list(response_scores(claimed, margin, repeats=config(iteration)["reject_repeats"]))
    return responses, _pairs_of(iteration, responses)


def _pairs_of(iteration: Iteration, responses: list[Response]) -> list[Pair]:
    """The pairs labeling.combine makes of scored responses (each with `n_rejected`) under the combine stage's
    k, seed and length ratio r: one instruction's after a review, or every instruction's."""
    cfg = config(iteration)
    return make_pairs(
        [ScoredResponse(r.pk, r.instruction_id, r.text, r.n_rejected) for r in responses],
        k=cfg["pairs_per_instruction"],
        seed=cfg["seed"],
        length_balance=cfg["length_balance"],
        length_ratio=iteration_length_ratio(iteration) if cfg["length_balance"] else None,
        chosen_is_best=cfg["chosen_is_best"],
    )


def _stored_pairs(iteration: Iteration, instruction_ids):
    return PreferencePair.objects.filter(iteration=iteration, instruction_id__in=instruction_ids)


def _replace_pairs(iteration: Iteration, instruction_ids, pairs) -> tuple[counts.Tally, list[PreferencePair]]:
    """Make the stored pairs of these instructions equal `pairs`, keeping the row (its id and exclusion) of two
    answers still paired; returns the change in the pair counts and the stored rows, by id.

    A row no longer paired is withdrawn rather than forgotten: when its two answers pair again (an undo, a later
    review) the pair gets its row back, so its number, link and exclusion survive a decision taken back.
    """
    old = {frozenset((p.chosen_id, p.rejected_id)): p for p in _stored_pairs(iteration, instruction_ids)}
    keep, create, unchanged = [], [], []
    for pair in pairs:
        row = old.pop(frozenset((pair.chosen_id, pair.rejected_id)), None)
        if row is None:
            create.append(
                PreferencePair(
                    iteration=iteration,
                    instruction_id=pair.instruction_id,
                    chosen_id=pair.chosen_id,
                    rejected_id=pair.rejected_id,
                    score_gap=pair.score_gap,
                )
            )
        elif (row.chosen_id, row.rejected_id, row.score_gap) != (pair.chosen_id, pair.rejected_id, pair.score_gap):
            row.chosen_id, row.rejected_id, row.score_gap = pair.chosen_id, pair.rejected_id, pair.score_gap
            keep.append(row)
        else:
            unchanged.append(row)
    restored = _restore_withdrawn(iteration, create)
    withdrawn = list(old.values())
    if withdrawn:
        PreferencePair.objects.filter(pk__in=[p.pk for p in withdrawn]).delete()
    WithdrawnPair.objects.bulk_create(
        [
            WithdrawnPair(
                iteration=iteration,
                chosen_id=p.chosen_id,
                rejected_id=p.rejected_id,
                pair_id=p.pk,
                excluded=p.excluded,
                excluded_by_id=p.excluded_by_id,
                origin=p.origin,
            )
            for p in withdrawn
        ]
    )
    PreferencePair.objects.bulk_update(keep, ["chosen", "rejected", "score_gap"])
    PreferencePair.objects.bulk_create(create)
    excluded = sum(p.excluded for p in restored) - sum(p.excluded for p in withdrawn)
    stored = sorted(unchanged + keep + create, key=lambda p: p.pk)
    return counts.Tally(pairs=len(create) - len(withdrawn), excluded=excluded), stored


def _restore_withdrawn(iteration: Iteration, create: list[PreferencePair]) -> list[PreferencePair]:
    """Give the new pairs whose two answers were paired before the withdrawn row's id, exclusion and origin,
    and forget those withdrawn rows; returns the pairs restored."""
    if not create:
        return []
    answers = {p.chosen_id for p in create} | {p.rejected_id for p in create}
    rows = WithdrawnPair.objects.filter(iteration=iteration, chosen_id__in=answers, rejected_id__in=answers)
    earlier = {frozenset((w.chosen_id, w.rejected_id)): w for w in rows}
    restored = []
    for pair in create:
        row = earlier.get(frozenset((pair.chosen_id, pair.rejected_id)))
        if row is not None:
            pair.pk, pair.excluded, pair.excluded_by_id = row.pair_id, row.excluded, row.excluded_by_id
            pair.origin = row.origin
            restored.append(pair)
    WithdrawnPair.objects.filter(pair_id__in=[p.pk for p in restored]).delete()
    return restored


def ensure_length_ratio(iteration_id: int) -> None:
    """Record the r of an iteration combined before the stage recorded it, the iteration locked meanwhile."""
    with transaction.atomic():
        iteration = Iteration.objects.select_for_update().filter(pk=iteration_id).first()
        if iteration is not None and iteration.status == IterationStatus.REVIEWING:
            iteration_length_ratio(iteration)


def iteration_length_ratio(iteration: Iteration) -> float | None:
    """The r the combine stage chose for the whole iteration (None: it kept no pair at any r).

    An iteration combined before the stage recorded r gets it computed once, as the stage would, and stored
    (by `ensure_length_ratio`, with the iteration locked, so two reviews do not both compute it).
    """
    if "length_ratio" in (iteration.metrics or {}):
        return iteration.metrics["length_ratio"]
    cfg = config(iteration)
    labeled = Response.objects.filter(iteration=iteration, status=ResponseStatus.LABELED)
    responses = response_scores(labeled, repeats=cfg["reject_repeats"])
    ratio = combine_pairs(
        [ScoredResponse(r.pk, r.instruction_id, r.text, r.n_rejected) for r in responses],
        k=cfg["pairs_per_instruction"],
        seed=cfg["seed"],
        chosen_is_best=cfg["chosen_is_best"],
    ).length_ratio
    iteration.metrics = (iteration.metrics or {}) | {"length_ratio": ratio}
    iteration.save(update_fields=["metrics"])
    return ratio
