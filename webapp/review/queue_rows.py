"""The spot-check queue's reads, each one plain statement: its window of most uncertain unreviewed verdicts, the
reviews of the window's instructions, the claims it shows with their answers and instructions, the pair pages
those link to, and how many claims a reviewer has decided.

The queue is served on every decision a reviewer makes. Built as querysets (an `Exists` over standing reviews,
an `Abs` ordering, a subquery of reviewed answers) these statements cost the app several times the database's
time to compile and to turn into rows, so they are written out, as `instruction_rows` writes out an override's.
"""

from dataclasses import dataclass

from django.db import connection

from webapp.models import Instruction
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

# The shown claims, each with its labeler verdict, its answer and its instruction.
_SHOWN = """SELECT v.id, v.p_yes, v.p_no, c.id, c.{index}, c.text, c.question, c.divided_by,
 r.id, r.text, r.seed, r.score, i.id, i.question, i.image FROM {verdict} v
 JOIN {claim} c ON c.id = v.claim_id JOIN {response} r ON r.id = c.response_id
 JOIN {instruction} i ON i.id = r.instruction_id WHERE v.id IN ({verdicts})"""

# Per answer: its first stored pair (at most two per instruction: a probe of the instruction's pairs), and its
# instruction's best-scoring other answer, for a page beside it when it is in none.
_LINKS = """SELECT r.id, r.score, p.chosen_id, p.rejected_id, o.id, o.score FROM {response} r
 LEFT JOIN {pair} p ON p.id = (SELECT MIN(q.id) FROM {pair} q WHERE q.instruction_id = r.instruction_id
   AND q.iteration_id = r.iteration_id AND r.id IN (q.chosen_id, q.rejected_id))
 LEFT JOIN {response} o ON o.id = (SELECT b.id FROM {response} b WHERE b.iteration_id = r.iteration_id
   AND b.instruction_id = r.instruction_id AND b.id <> r.id ORDER BY b.score DESC NULLS LAST, b.id LIMIT 1)
 WHERE r.id IN ({answers})"""

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


@dataclass(frozen=True)
class ShownAnswer:
    pk: int
    instruction_id: int
    text: str
    seed: int
    score: int | None


@dataclass(frozen=True)
class ShownInstruction:
    pk: int
    question: str
    image_url: str


@dataclass(frozen=True)
class ShownClaim:
    """A claim the queue shows: the fields its chip reads, its labeler verdict, its answer and instruction."""

    verdict_id: int
    p_yes: float
    p_no: float
    pk: int
    index: int
    text: str
    question: str
    divided_by: str
    response_id: int
    answer: ShownAnswer
    instruction: ShownInstruction


def shown(verdict_ids: list[int]) -> list[ShownClaim]:
    """The verdicts' claims with their answers and instructions, in the order of `verdict_ids`."""
    if not verdict_ids:
        return []
    names = table_names() | {"index": connection.ops.quote_name("index")}
    sql = _SHOWN.format(verdicts=", ".join(["%s"] * len(verdict_ids)), **names)
    images = Instruction._meta.get_field("image").storage
    with connection.cursor() as cursor:
        cursor.execute(sql, verdict_ids)
        rows = {row[0]: row for row in cursor}
    claims = []
    for verdict_id in verdict_ids:
        _, p_yes, p_no, pk, index, text, question, divided_by, answer, answer_text, seed, score, *instruction = rows[
            verdict_id
        ]
        instruction_id, instruction_question, image = instruction
        claims.append(
            ShownClaim(
                verdict_id, p_yes, p_no, pk, index, text, question, divided_by, answer,
                ShownAnswer(answer, instruction_id, answer_text, seed, score),
                ShownInstruction(instruction_id, instruction_question, images.url(image)),
            )
        )  # fmt: skip
    return claims


def pair_links(answer_ids) -> dict[int, tuple[int, int]]:
    """For each answer, the (left, right) answers of a pair page showing it: its first stored pair, else it
    beside its instruction's best-scoring other answer, the better-scoring one left (that page says why the two
    are no pair); an instruction's only answer has none."""
    answer_ids = list(answer_ids)
    if not answer_ids:
        return {}
    sql = _LINKS.format(answers=", ".join(["%s"] * len(answer_ids)), **table_names())
    links = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, answer_ids)
        for answer, score, chosen, rejected, other, other_score in cursor:
            if chosen is not None:
                links[answer] = (chosen, rejected)
            elif other is not None:
                higher = other_score is not None and (score is None or other_score >= score)
                links[answer] = (other, answer) if higher else (answer, other)
    return links
