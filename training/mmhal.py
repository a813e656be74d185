"""MMHal-Bench (Sun et al., LLaVA-RLHF, 2023): 96 questions on OpenImages pictures, answers judged by an LLM.

The judge reads each question, the image's contents (labels), the human answer and the model's answer in the
reference's prompt (`data/mmhal_judge_prompt.txt`, the template of LLaVA-RLHF's `Eval/eval_gpt_mmhal.py`, copied
unchanged) and rates it 0-6; ratings below 3 mean a hallucination. The rating is parsed as the reference parses it:
the reply holds "rating: s" (any case) for exactly one s in 0..6, else it counts as 0 (and as `unparsed` here).
Figures: the average rating, the hallucination rate (share of ratings < 3) and the average per question type.

Any OpenAI-compatible server can judge (`labeling.backends.openai_backend`): one user message, temperature 0, as
the reference asks GPT-4; the reference keeps no seed and lets the reply run to the model's limit.

The benchmark's `response_template.json` gives the questions: `question_type`, `image_content`, `question`,
`gt_answer`, `image_src` (the picture's URL); the picture is read from `image_path` when an entry has one, else from
`images/<file name of image_src>` beside the template. Per question type, the reference averages by position
(i % 8: the file cycles through the 8 types); here by `question_type`, the same on the released file.
"""

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlparse

from labeling.backends.base import Backend, Sampling
from labeling.batching import batched
from labeling.generate import Instruction, generate_candidates

PROMPT_FILE = Path(__file__).parent / "data" / "mmhal_judge_prompt.txt"
FIELDS = ("question_type", "image_content", "question", "gt_answer")
JUDGE_SAMPLING = Sampling(temperature=0.0, max_new_tokens=1024)
HALLUCINATION_BELOW = 3


class MMHalFileError(ValueError):
    """The benchmark's file is missing or not in its format; the message names the file and the field."""


def load_questions(path) -> list[dict]:
    """response_template.json's entries, checked; each gets "image": the picture's path."""
    path = Path(path)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MMHalFileError(f"{path}: no such file (MMHal-Bench's response_template.json)") from None
    except json.JSONDecodeError as error:
        raise MMHalFileError(f"{path}: not JSON ({error})") from None
    if not isinstance(records, list):
        raise MMHalFileError(f"{path}: expected a list of questions")
    questions = []
    for n, record in enumerate(records):
        if not isinstance(record, dict):
            raise MMHalFileError(f"{path}: entry {n} is not an object")
        for field in FIELDS:
            if field not in record:
                raise MMHalFileError(f"{path}: entry {n} has no '{field}'")
        if not isinstance(record["image_content"], list):
            raise MMHalFileError(f"{path}: entry {n}: 'image_content' must be a list of labels")
        if record.get("image_path"):
            image = path.parent / record["image_path"]
        elif record.get("image_src"):
            image = path.parent / "images" / Path(urlparse(record["image_src"]).path).name
        else:
            raise MMHalFileError(f"{path}: entry {n} has neither 'image_path' nor 'image_src'")
        questions.append(record | {"image": image})
    return questions


def judge_prompt(record: dict, answer: str) -> str:
    """The reference's prompt for one answer."""
    template = PROMPT_FILE.read_text(encoding="utf-8")
    return template.format(", ".join(record["image_content"]), record["question"], record["gt_answer"], answer)


def parse_rating(reply: str) -> int | None:
    """The rating in a judge's reply, as the reference finds it; None when none or several are found."""
    found = [s for s in range(7) if f"rating: {s}" in reply.lower()]
    return found[0] if len(found) == 1 else None


def mmhal_scores(ratings: Sequence[int | None], types: Sequence[str]) -> dict:
    """Average rating, hallucination rate (ratings < 3) and average per question type; an unparsed reply counts as
    0, as in the reference."""
    if not ratings:
        return {"questions": 0, "score": None, "hallucination_rate": None, "unparsed": 0, "per_type": {}}
    scores = [0 if r is None else r for r in ratings]
    per_type: dict[str, list[int]] = {}
    for kind, score in zip(types, scores, strict=True):
        per_type.setdefault(kind, []).append(score)
    return {
        "questions": len(scores),
        "score": sum(scores) / len(scores),
        "hallucination_rate": sum(s < HALLUCINATION_BELOW for s in scores) / len(scores),
        "unparsed": sum(r is None for r in ratings),
        "per_type": {kind: sum(values) / len(values) for kind, values in per_type.items()},
    }


def answer_questions(
    policy: Backend,
    questions: Sequence[dict],
    sampling: Sampling,
    seed: int = 0,
    batch_size: int = 8,
    progress: Callable[[int], None] = lambda done: None,
) -> list[str]:
    """The policy answers each question once (the reference's `model_answer`)."""
    instructions = []
    for n, record in enumerate(questions):
        if not Path(record["image"]).is_file():
            raise MMHalFileError(f"{record['image']}: no such image (entry {n}, 'image_path' / 'image_src')")
        instructions.append(Instruction(id=n, image=Path(record["image"]), question=record["question"]))
    answers: list[str] = []
    for batch in batched(instructions, batch_size):
        answers += [candidate.text for candidate in generate_candidates(policy, batch, 1, sampling, seed)]
        progress(len(answers))
    return answers


def judge(judge_backend: Backend, questions: Sequence[dict], answers: Sequence[str]) -> dict:
    """The judge rates every answer; MMHal-Bench's figures, with each reply and rating under "judged"."""
    prompts = [judge_prompt(record, answer) for record, answer in zip(questions, answers, strict=True)]
    replies = judge_backend.complete(prompts, JUDGE_SAMPLING)
    ratings = [parse_rating(reply) for reply in replies]
    judged = [
        {"question": record["question"], "answer": answer, "reply": reply, "rating": rating}
        for record, answer, reply, rating in zip(questions, answers, replies, ratings, strict=True)
    ]
    return mmhal_scores(ratings, [record["question_type"] for record in questions]) | {"judged": judged}
