"""One instruction's labeled answers, their claims with the labeler's verdict, and the claims' reviews, each read
in one plain statement.

A review re-scores one instruction, and its HTMX answer shows what that changed: both read these same rows, so
they are read once per override, by `read`, and handed on (`service.Rebuilt`) instead of read again. The SQL is
written out because building the equivalent querysets (a filtered relation, an annotation, three joins) cost
the app more CPU than the database spent running them.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.dateparse import parse_datetime

from webapp.models import Claim, Instruction, PreferencePair, Response, ResponseStatus, Review, Verdict


@dataclass
class AnswerRow:
    """A labeled answer as the rebuild scores it; `score` is the stored one until the rebuild sets it."""

    pk: int
    instruction_id: int
    text: str
    score: int | None
    repeated_claims: int
    n_rejected: int = 0


@dataclass(frozen=True)
class ReviewRow:
    """A review of one of the claims, with what a claim's history shows of it."""

    pk: int
    claim_id: int
    decision: str
    undoes_id: int | None
    created_at: datetime
    note: str
    reviewer_id: int
    reviewer: str  # username

    @property
    def decision_row(self) -> tuple:
        """As REVIEW_ROW (pk, claim, decision, undoes), what `standing_decisions` reads."""
        return self.pk, self.claim_id, self.decision, self.undoes_id


@dataclass
class InstructionRows:
    answers: list[AnswerRow]  # by pk
    claims: list[tuple]  # VERDICT_ROW rows: (pk, response id, labeler_accepted, p_yes)
    reviews: list[ReviewRow]  # in the order they were made


def table_names() -> dict[str, str]:
    """The review pages' tables (and the user table's username column) as the plain statements name them."""
    user = get_user_model()
    return {
        "instruction": Instruction._meta.db_table,
        "pair": PreferencePair._meta.db_table,
        "response": Response._meta.db_table,
        "claim": Claim._meta.db_table,
        "verdict": Verdict._meta.db_table,
        "review": Review._meta.db_table,
        "user": user._meta.db_table,
        "username": user._meta.get_field(user.USERNAME_FIELD).column,
    }


_ANSWERS = """SELECT id, instruction_id, text, score, repeated_claims FROM {response}
 WHERE iteration_id = %s AND instruction_id = %s AND status = %s ORDER BY id"""
_CLAIMS = """SELECT c.id, c.response_id, v.p_yes > v.p_no + %s, v.p_yes FROM {claim} c
 JOIN {response} r ON r.id = c.response_id LEFT JOIN {verdict} v ON v.claim_id = c.id AND v.labeler = %s
 WHERE r.iteration_id = %s AND r.instruction_id = %s AND r.status = %s"""
_REVIEWS = """SELECT rv.id, rv.claim_id, rv.decision, rv.undoes_id, rv.created_at, rv.note, rv.reviewer_id,
 u.{username} FROM {review} rv JOIN {claim} c ON c.id = rv.claim_id JOIN {response} r ON r.id = c.response_id
 JOIN {user} u ON u.id = rv.reviewer_id
 WHERE r.iteration_id = %s AND r.instruction_id = %s AND r.status = %s ORDER BY rv.created_at, rv.id"""


_CLAIM_REVIEWS = """SELECT rv.id, rv.claim_id, rv.decision, rv.undoes_id, rv.created_at, rv.note, rv.reviewer_id,
 u.{username} FROM {review} rv JOIN {user} u ON u.id = rv.reviewer_id
 WHERE rv.claim_id IN ({claims}) ORDER BY rv.created_at, rv.id"""


def _aware(value) -> datetime:
    """SQLite hands back the stored text (UTC); PostgreSQL an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return parse_datetime(value).replace(tzinfo=UTC)


def read(iteration, instruction_id: int) -> InstructionRows:
    """The instruction's labeled answers of `iteration`, their claims with the verdict of the iteration's labeler
    under its margin, and every review of those claims."""
    tables = table_names()
    where = [iteration.pk, instruction_id, ResponseStatus.LABELED]
    with connection.cursor() as cursor:
        cursor.execute(_ANSWERS.format(**tables), where)
        answers = [AnswerRow(*row) for row in cursor.fetchall()]
        cursor.execute(_CLAIMS.format(**tables), [float(iteration.margin), iteration.labeler, *where])
        claims = [(pk, response, None if ok is None else bool(ok), p_yes) for pk, response, ok, p_yes in cursor]
        cursor.execute(_REVIEWS.format(**tables), where)
        reviews = [ReviewRow(*row[:4], _aware(row[4]), *row[5:]) for row in cursor.fetchall()]
    return InstructionRows(answers, claims, reviews)


def claim_reviews(claim_ids: list[int]) -> list[ReviewRow]:
    """Every review of the claims, in the order they were made: a page's claim histories."""
    if not claim_ids:
        return []
    sql = _CLAIM_REVIEWS.format(claims=", ".join(["%s"] * len(claim_ids)), **table_names())
    with connection.cursor() as cursor:
        cursor.execute(sql, claim_ids)
        return [ReviewRow(*row[:4], _aware(row[4]), *row[5:]) for row in cursor.fetchall()]
