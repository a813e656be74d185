"""Held-out evaluation: the policy answers held-out instructions once each, and the labeler judges the answers.

The answers are divided into claims and labelled exactly as training data are (same splitter, same labeler,
same yes/no rule), so the held-out hallucination rate measures the policy by the feedback it was trained
on: the share of rejected claims, and the share of answers with at least one. Decoding is greedy by default
(temperature 0), so a checkpoint always gets the same answers and two checkpoints differ only by their
weights. CHAIR on COCO images (training.chair) is the label-free counterpart.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from labeling.backends.base import Backend, Sampling
from labeling.batching import batched
from labeling.conquer import label_claims
from labeling.divide import QuestionAnswer, divide
from labeling.generate import Instruction, generate_candidates

GREEDY = Sampling(temperature=0.0, max_new_tokens=512)


@dataclass(frozen=True)
class JudgedAnswer:
    """A held-out answer, its claims' verdicts (True = accepted), or why it could not be divided."""

    instruction_id: int | str
    text: str
    accepted: tuple[bool, ...] = ()
    failure: str | None = None

    @property
    def rejected(self) -> int:
        return self.accepted.count(False)


@dataclass(frozen=True)
class _ClaimQuery:
    image: object
    question: str


def answer_and_judge(
    policy: Backend,
    labeler: Backend,
    instructions: Sequence[Instruction],
    sampling: Sampling = GREEDY,
    divide_method: str = "rule",
    divider: Backend | None = None,
    seed: int = 0,
    batch_size: int = 8,
    progress: Callable[[int], None] = lambda done: None,
) -> list[JudgedAnswer]:
    """One answer per instruction (seed `seed`), divided into claims and labelled; `progress(done)` per batch."""
    answers = []
    for batch in batched(instructions, batch_size):
        answers += generate_candidates(policy, batch, 1, sampling, seed)
        progress(len(answers))
    divided = divide(
        [QuestionAnswer(i.question, a.text) for i, a in zip(instructions, answers, strict=True)],
        divide_method,
        divider,
    )
    queries = [
        _ClaimQuery(instruction.image, claim.question)
        for instruction, result in zip(instructions, divided, strict=True)
        for claim in result.claims
    ]
    verdicts = iter(label_claims(labeler, queries)[0]) if queries else iter(())
    return [
        JudgedAnswer(
            instruction_id=answer.instruction_id,
            text=answer.text,
            accepted=tuple(next(verdicts).accepted for _ in result.claims),
            failure=result.failure,
        )
        for answer, result in zip(answers, divided, strict=True)
    ]


def hallucination_rates(answers: Sequence[JudgedAnswer]) -> dict:
    """Share of rejected claims, and of answers with any rejected claim (answers that divided into claims)."""
    judged = [a for a in answers if a.failure is None]
    claims = sum(len(a.accepted) for a in judged)
    rejected = sum(a.rejected for a in judged)
    with_any = sum(1 for a in judged if a.rejected)
    return {
        "answers": len(answers),
        "split_failed": len(answers) - len(judged),
        "claims": claims,
        "rejected_claims": rejected,
        "claim_hallucination_rate": rejected / claims if claims else None,
        "answers_with_hallucination": with_any,
        "answer_hallucination_rate": with_any / len(judged) if judged else None,
    }
