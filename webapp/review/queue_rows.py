"""The spot-check queue's reads, each one plain statement: its window of most uncertain unreviewed verdicts, the
reviews of the window's instructions, and how many claims a reviewer has decided.

The queue is served on every decision a reviewer makes. Built as querysets (an `Exists` over standing reviews,
an `Abs` ordering, a subquery of reviewed answers) these statements cost the app several times the database's
time to compile and to turn into rows, so they are written out, as `instruction_rows` writes out an override's.
"""

from django.db import connection

from webapp.review.instruction_rows import table_names

# A claim waits while none of its reviews stands (neither an undo nor undone); verdict_uncertainty_idx serves the
# order. With a second labeler, a claim the two disagree on (one accepts, the other does not) comes first.
_WINDOW = """SELECT v.id, c.response_id, r.instruction_id, {disagree} FROM {verdict} v
 JOIN {claim} c ON c.id = v.claim_id JOIN {response} r ON r.id = c.response_id
 WHERE r.iteration_id = %s AND v.labeler = %s AND NOT EXISTS (
   SELECT 1 FROM {review} rv WHERE rv.claim_id = v.claim_id AND rv.undoes_id IS NULL
   AND NOT EXISTS (SELECT 1 FROM {review} u WHERE u.undoes_id = rv.id))
 ORDER BY {first}ABS(v.p_yes - v.p_no), v.id LIMIT %s"""
_DISAGREE = """EXISTS (SELECT 1 FROM {verdict} o
 WHERE o.claim_id = v.claim_id AND o.labeler = %s AND o.accepted <> v.accepted)"""

# The reviews of the claims of the instructions' answers that have one standing (`Response.reviewed`, kept by a
# trigger): a few index probes from the instructions, however many reviews the iteration holds.
_REVIEWS = """SELECT rv.id, rv.claim_id, rv.undoes_id, r.instruction_id FROM {review} rv
 JOIN {claim} c ON c.id = rv.claim_id JOIN {response} r ON r.id = c.response_id
 WHERE r.iteration_id = %s AND r.reviewed AND r.instruction_id IN ({instructions})"""

# One reviewer's claims with a standing decision or unsure: an undo names one of its reviewer's own decisions, so
# both sides read the (reviewer, iteration) index rather than every review of the iteration.
_DONE = """SELECT COUNT(DISTINCT claim_id) FROM {review} WHERE iteration_id = %s AND reviewer_id = %s
 AND undoes_id IS NULL AND id NOT IN (
   SELECT undoes_id FROM {review} WHERE iteration_id = %s AND reviewer_id = %s AND undoes_id IS NOT NULL)"""


def window(iteration_id: int, labeler: str, size: int, second_labeler: str | None = None) -> list[tuple]:
    """(verdict, answer, instruction, disagree) of the `size` most uncertain waiting verdicts of `labeler`;
    with `second_labeler`, those it disagrees with first (disagree is False without one)."""
    tables = table_names()
    if second_labeler is None:
        sql, params = _WINDOW.format(disagree="FALSE", first="", **tables), [iteration_id, labeler, size]
    else:
        disagree = _DISAGREE.format(**tables)
        sql = _WINDOW.format(disagree=disagree, first=f"{disagree} DESC, ", **tables)
        params = [second_labeler, iteration_id, labeler, second_labeler, size]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(pk, answer, instruction, bool(disagree)) for pk, answer, instruction, disagree in cursor]


def reviews_of_instructions(iteration_id: int, instructions: set[int]) -> list[tuple]:
    """(review, claim, undoes, instruction) of every review of the instructions' reviewed answers."""
    if not instructions:
        return []
    sql = _REVIEWS.format(instructions=", ".join(["%s"] * len(instructions)), **table_names())
    with connection.cursor() as cursor:
        cursor.execute(sql, [iteration_id, *instructions])
        return cursor.fetchall()


def decided_by(reviewer_id: int, iteration_id: int) -> int:
    """How many claims of the iteration the reviewer has a decision on that they have not taken back."""
    with connection.cursor() as cursor:
        cursor.execute(_DONE.format(**table_names()), [iteration_id, reviewer_id, iteration_id, reviewer_id])
        return cursor.fetchone()[0]
