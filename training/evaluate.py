"""Held-out evaluation: the policy answers held-out instructions once each, and the labeler judges the answers.

The answers are divided into claims and labelled exactly as training data are (same splitter, same labeler,
same yes/no rule), so the held-out hallucination rate measures the policy by the feedback it was trained
on: the share of rejected claims, and the share of answers with at least one. Decoding is greedy by default
(temperature 0), so a checkpoint always gets the same answers and two checkpoints differ only by their
weights. CHAIR on COCO images (training.chair) is the label-free counterpart; where the instructions carry
their true objects (the shapes world), `truth_scores` measures the answers, and the labeler, against the truth.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from labeling.answer_shape import answer_shape, shape_metrics
from labeling.backends.base import Backend, Sampling
from labeling.batching import batched
from labeling.conquer import label_claims
from labeling.divide import QuestionAnswer, divide
from labeling.generate import PER_INSTRUCTION, Instruction, generate_candidates
from labeling.shapes import mentioned_objects, question_is_true, truth_metrics

GREEDY = Sampling(temperature=0.0, max_new_tokens=512)


@dataclass(frozen=True)
class JudgedAnswer:
    """A held-out answer, its claims' questions and verdicts (True = accepted), or why it could not be divided."""

    instruction_id: int | str
    text: str
    accepted: tuple[bool, ...] = ()
    failure: str | None = None
    questions: tuple[str, ...] = ()
    claims: tuple[str, ...] = ()  # the claims the questions ask about, as divided

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
    seeding: str = PER_INSTRUCTION,
    batch_size: int = 8,
    progress: Callable[[int], None] = lambda done: None,
) -> list[JudgedAnswer]:
    """One answer per instruction (drawn from `seed` as generate draws candidates: labeling.generate), divided into
    claims and labelled; `progress(done)` per batch."""
    answers = []
    for batch in batched(instructions, batch_size):
        answers += generate_candidates(policy, batch, 1, sampling, seed, seeding)
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
            questions=tuple(claim.question for claim in result.claims),
            claims=tuple(claim.text for claim in result.claims),
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


def answer_shapes(answers: Sequence[JudgedAnswer]) -> dict:
    """Words, claims and repeats per answer (labeling.answer_shape), over the answers that divided."""
    return shape_metrics(answer_shape(a.text, a.claims) for a in answers if a.failure is None)


def labeler_accuracy(judgements, is_true: Callable[[str, Sequence[str]], bool | None] = question_is_true) -> dict:
    """How often the labeler's verdict matches the truth, over (question, accepted, true objects) triples.

    `is_true` reads a question's truth: by default one object's (`question_is_true`); a whole answer's
    question is true when every object it names is there (`labeling.shapes.description_is_true`). Questions
    whose truth is unknown (no object of the world named; for one object's question, several) are left out
    and counted.
    """
    right = judged = unknown = 0
    for question, accepted, objects in judgements:
        truth = is_true(question, objects)
        if truth is None:
            unknown += 1
            continue
        judged += 1
        right += accepted == truth
    return {"labeler_accuracy": right / judged if judged else None, "claims_judged": judged, "claims_unknown": unknown}


def truth_scores(answers: Sequence[JudgedAnswer], truth: dict) -> dict:
    """The answers of instructions with known objects (`truth`: instruction id → objects) against the truth:
    CHAIRs / CHAIRi / recall / length (labeling.shapes.truth_metrics) and the labeler's accuracy on their claims."""
    known = [a for a in answers if a.instruction_id in truth]
    scores = truth_metrics((a.text, truth[a.instruction_id]) for a in known)
    judgements = (
        (question, accepted, truth[a.instruction_id])
        for a in known
        for question, accepted in zip(a.questions, a.accepted, strict=True)
    )
    return scores | labeler_accuracy(judgements)


def pair_truth(pairs) -> dict:
    """Over (chosen text, rejected text, true objects): in how many pairs the chosen answer names fewer wrong
    objects than the rejected one (right), more (wrong), or as many (even). Right pairs teach less hallucination."""
    counts = {"pairs_right": 0, "pairs_wrong": 0, "pairs_even": 0}
    for chosen, rejected, objects in pairs:
        truth = set(objects)
        wrong_chosen = sum(name not in truth for name in mentioned_objects(chosen))
        wrong_rejected = sum(name not in truth for name in mentioned_objects(rejected))
        key = (
            "pairs_right"
            if wrong_chosen < wrong_rejected
            else "pairs_wrong"
            if wrong_chosen > wrong_rejected
            else "pairs_even"
        )
        counts[key] += 1
    return counts
