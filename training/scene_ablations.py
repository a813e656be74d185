"""The paper's ablations in world 2, as plain library calls: the instructions, the feedback each arm gets and the
pairs it trains on. `bench/ablations.py` runs the arms and scores them; this module holds what an arm *is*.

- Feedback (a): divide and conquer (`claim_scores`: each claim a yes/no question, an answer's score minus its
  rejected claims) or self-rewarding (`whole_scores`: the labeler asked once about the whole answer).
- Pairs (c): the policy's own answers as RLAIF-V pairs them (`own_pairs`); fine-grained corrections, the
  rejected answer with each wrong sentence set right from the truth as the chosen one (`corrected_pairs`,
  RLHF-V's human corrections); adapted, a true description in the second generator's style as the chosen one
  (`adapted_pairs`).
- Candidates (d): the policy's alone, or half the policy's and half the second generator's (`mixed`).
Iterative vs non-iterative (b) is a matter of which checkpoint generates: the bench's loop.
"""

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labeling import scene_text, scenes
from labeling.backends.base import Backend, PolarQuery, Sampling
from labeling.combine import Pair, ScoredResponse, make_pairs
from labeling.conquer import label_claims
from labeling.divide import QuestionAnswer, divide_by_rules
from labeling.formats import trl_jsonl_line
from labeling.generate import Candidate, Instruction, generate_candidates
from labeling.pipeline import ClaimRecord
from labeling.whole_response import whole_response_question
from training.scene_metrics import answer_record


@dataclass(frozen=True)
class Task:
    """One instruction of world 2: its picture (file and scene) and question, and the true answer's facts."""

    id: str
    image: Path
    question: str
    kind: str  # describe | count | where
    scene: scenes.Scene
    facts: tuple[scene_text.Fact, ...]

    @property
    def instruction(self) -> Instruction:
        return Instruction(self.id, self.image, self.question, key=f"{self.image.name}\n{self.question}")


def draw_tasks(folder, n: int, split: str, seed: int, describe_only: bool = False) -> list[Task]:
    """n pictures of a (split, seed) saved under `folder`, each with one instruction (mostly "describe"; only
    "describe" for a test set, which AMBER's generative figures read)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = scenes.scene_rng(seed, split)
    tasks = []
    for i in range(n):
        scene = scenes.random_scene(rng)
        image = folder / f"{split}-{seed}-{i:05d}.png"
        scenes.draw(scene).save(image)
        if describe_only:
            kind, question, facts = "describe", rng.choice(scene_text.DESCRIBE), scene_text.scene_facts(scene)
        else:
            kind, question, facts = scene_text.instruction(scene, rng)
        tasks.append(Task(f"{split}-{seed}-{i}", image, question, kind, scene, tuple(facts)))
    return tasks


def answers(backend: Backend, tasks: Sequence[Task], n: int, seed: int, sampling: Sampling) -> list[Candidate]:
    """n sampled answers per task, each with a seed of its own drawn from (seed, picture, question, k)."""
    return generate_candidates(backend, [t.instruction for t in tasks], n=n, sampling=sampling, base_seed=seed)


def claim_scores(
    labeler: Backend | None, tasks: Sequence[Task], candidates: Sequence[Candidate], reject_repeats: bool = True
) -> dict:
    """Divide and conquer: (task id, seed) → rejected claims, each sentence a claim the labeler judges; with
    `reject_repeats` (the app's config of that name) a claim repeating an earlier one of its answer counts as
    rejected, as the shapes world showed a claim-by-claim labeler otherwise rewards padding with repeats. With
    no labeler (None) each claim is judged by its picture's truth: the perfect labeler, feedback's ceiling."""
    by_id = {t.id: t for t in tasks}
    claims, repeats = [], {}
    for c in candidates:
        divided = divide_by_rules(QuestionAnswer(by_id[c.instruction_id].question, c.text)).claims
        questions = [claim.question for claim in divided]
        repeats[c.instruction_id, c.seed] = len(questions) - len(set(questions)) if reject_repeats else 0
        claims += [
            ClaimRecord(c.instruction_id, c.seed, k, claim.text, claim.question, "rule", by_id[c.instruction_id].image)
            for k, claim in enumerate(divided)
        ]
    rejected = dict(repeats)
    for claim, accepted in zip(claims, judged(labeler, claims, by_id), strict=True):
        rejected[claim.instruction_id, claim.seed] += not accepted
    return rejected


def whole_scores(labeler: Backend | None, tasks: Sequence[Task], candidates: Sequence[Candidate]) -> dict:
    """Self-rewarding: (task id, seed) → 1 if the labeler rejects the whole answer asked at once, else 0; with
    no labeler, 1 if the answer holds a wrong claim (what the labeler was trained to answer)."""
    by_id = {t.id: t for t in tasks}
    claims = [
        ClaimRecord(c.instruction_id, c.seed, 0, c.text, whole_response_question(c.text), "whole", image)
        for c in candidates
        for image in [by_id[c.instruction_id].image]
    ]
    verdicts = judged(labeler, claims, by_id)
    return {(c.instruction_id, c.seed): int(not accepted) for c, accepted in zip(candidates, verdicts, strict=True)}


def judged(labeler: Backend | None, claims: Sequence[ClaimRecord], by_id: dict[str, Task]) -> list[bool]:
    """Each claim accepted or not: by the labeler (P(yes) > P(no)), or with none, by its picture's truth (no
    wrong or unreadable sentence)."""
    if labeler is None:
        return [answer_record(c.text, by_id[c.instruction_id].scene)["wrong_claims"] == 0 for c in claims]
    verdicts, _ = label_claims(labeler, claims)
    return [v.accepted for v in verdicts]


def own_pairs(
    candidates: Sequence[Candidate], rejected: dict, seed: int, k: int = 2, chosen_is_best: bool = True
) -> list[tuple[str, str, str]]:
    """RLAIF-V's pairs of the candidates under their scores (at most k per instruction, lengths balanced), as
    (task id, chosen text, rejected text); `chosen_is_best` (the app's config, chosen on world 1's validation
    split) keeps only pairs whose chosen answer has its instruction's best score."""
    texts = {(c.instruction_id, c.seed): c.text for c in candidates}
    scored = [ScoredResponse((c.instruction_id, c.seed), c.instruction_id, c.text, rejected[c.instruction_id, c.seed])
              for c in candidates]  # fmt: skip
    pairs: list[Pair] = make_pairs(scored, k=k, seed=seed, chosen_is_best=chosen_is_best)
    return [(p.instruction_id, texts[p.chosen_id], texts[p.rejected_id]) for p in pairs]


def corrected_pairs(pairs: Sequence[tuple[str, str, str]], tasks: Sequence[Task]) -> list[tuple[str, str, str]]:
    """The same pairs with the chosen answer replaced by the rejected one corrected from the truth; a pair whose
    correction changes nothing (the rejected answer was right) is dropped."""
    by_id = {t.id: t for t in tasks}
    out = []
    for task_id, _, rejected in pairs:
        fixed = scene_text.corrected(rejected, by_id[task_id].scene)
        if fixed and fixed != rejected:
            out.append((task_id, fixed, rejected))
    return out


def adapted_pairs(pairs: Sequence[tuple[str, str, str]], tasks: Sequence[Task]) -> list[tuple[str, str, str]]:
    """The same pairs with the chosen answer replaced by the true answer in the second generator's style."""
    by_id = {t.id: t for t in tasks}
    return [(task_id, scene_text.describe(by_id[task_id].facts, "chatty"), rejected) for task_id, _, rejected in pairs]


def mixed(own: Sequence[Candidate], other: Sequence[Candidate], n: int) -> list[Candidate]:
    """Per instruction, the policy's first n/2 candidates and the second generator's first n/2."""
    half = n // 2
    out = []
    for task_id in dict.fromkeys(c.instruction_id for c in own):
        out += [c for c in own if c.instruction_id == task_id][:half]
        out += [c for c in other if c.instruction_id == task_id][: n - half]
    return out


def same_number(pair_sets: dict[str, list], seed: int) -> dict[str, list]:
    """Every arm's pairs cut to the smallest arm's number, by a seeded draw: arms differ in what they train on,
    not in how much."""
    smallest = min(len(pairs) for pairs in pair_sets.values())
    return {name: random.Random(f"{seed}-{name}").sample(pairs, smallest) for name, pairs in pair_sets.items()}


def pair_truth(pairs: Sequence[tuple[str, str, str]], tasks: Sequence[Task]) -> dict[str, Counter]:
    """How often an arm's chosen answer is truly the better of its pair, by the two measures of the truth that
    matter here: fewer wrong claims (what divide and conquer estimates) and a lower count-aware CHAIR (what the
    ablations compare); each a Counter of right, wrong and tied pairs. A labeler's accuracy on a test set does
    not say this: its feedback is only as good as the pairs it orders."""
    by_id = {t.id: t for t in tasks}
    truth = {"wrong_claims": Counter(), "count_chair": Counter()}

    def order(chosen: float, rejected: float) -> str:
        return "right" if chosen < rejected else "wrong" if chosen > rejected else "tied"

    def count_chair(record: dict) -> float:
        return record["surplus"] / record["stated"] if record["stated"] else 0.0

    for task_id, chosen, rejected in pairs:
        scene = by_id[task_id].scene
        better, worse = answer_record(chosen, scene), answer_record(rejected, scene)
        truth["wrong_claims"][order(better["wrong_claims"], worse["wrong_claims"])] += 1
        truth["count_chair"][order(count_chair(better), count_chair(worse))] += 1
    return truth


def write_pairs(pairs: Sequence[tuple[str, str, str]], tasks: Sequence[Task], path) -> Path:
    """TRL vision-preference rows (JSONL) with absolute image paths, as `training.dpo.train_dpo` reads them."""
    by_id = {t.id: t for t in tasks}
    path = Path(path)
    with path.open("w", encoding="utf-8") as out:
        for task_id, chosen, rejected in pairs:
            task = by_id[task_id]
            out.write(trl_jsonl_line(str(task.image), task.question, chosen, rejected))
    return path


@dataclass
class Scored:
    """A checkpoint on the test pictures: per picture its answer's record (`scene_metrics.answer_record`) and
    its probes' share answered right."""

    records: list[dict]
    probe_answers: list[list[tuple[scene_text.Probe, bool | None]]]


def test_probes(tasks: Sequence[Task]) -> list[list[scene_text.Probe]]:
    """Each test picture's AMBER-style probes, drawn from the picture alone (the same for every arm)."""
    return [scene_text.probes(t.scene, random.Random(f"probes-{t.id}")) for t in tasks]


def score_checkpoint(backend: Backend, tasks: Sequence[Task], probes, sampling: Sampling, seed: int = 0) -> Scored:
    """One sampled description per test picture (its seed drawn from the picture, the same for every arm) and
    the policy's yes/no to each probe (yes when P(Yes) > P(No))."""
    described = answers(backend, tasks, 1, seed, sampling)
    records = [answer_record(c.text, t.scene) for c, t in zip(described, tasks, strict=True)]
    queries = [PolarQuery(t.image, p.question) for t, own in zip(tasks, probes, strict=True) for p in own]
    verdicts = iter(backend.yes_no(queries))
    said = [[(p, next(verdicts).accepted) for p in own] for own in probes]
    return Scored(records, said)
