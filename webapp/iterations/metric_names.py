"""An iteration's stored metrics (`Iteration.metrics`) in words: each key's label and unit, and its value as text.

The stages write short keys ("eval.truth_chair_s", "feedback.pairs_right"); people read labels. A key with no
entry here keeps its own name, so a new metric still shows. Ground-truth rates say "truth" and sit next to the
labeler-judged rate they check.
"""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    label: str
    percent: bool = False  # a share in [0, 1], shown as a percentage
    truth: bool = False  # measured against the ground truth (the shapes world's objects, COCO's annotations)


METRICS = {
    # The held-out evaluation (the evaluate stage): the labeler's judgement, then the truth that checks it.
    "eval.answer_hallucination_rate": Metric("Answers with a rejected claim (labeler)", percent=True),
    "eval.truth_chair_s": Metric("Answers with a hallucinated object (truth, CHAIRs)", percent=True, truth=True),
    "eval.claim_hallucination_rate": Metric("Claims rejected (labeler)", percent=True),
    "eval.truth_chair_i": Metric("Object mentions hallucinated (truth, CHAIRi)", percent=True, truth=True),
    "eval.chair_s": Metric("Answers with a hallucinated object (COCO, CHAIRs)", percent=True, truth=True),
    "eval.chair_i": Metric("Object mentions hallucinated (COCO, CHAIRi)", percent=True, truth=True),
    "eval.truth_recall": Metric("True objects named (truth, recall)", percent=True, truth=True),
    "eval.object_recall": Metric("True objects named (COCO, recall)", percent=True, truth=True),
    "eval.truth_labeler_accuracy": Metric("Labeler right on held-out claims (truth)", percent=True, truth=True),
    "eval.truth_count_chair_s": Metric(
        "Answers with a hallucinated or over-counted object (truth, count-aware CHAIRs)", percent=True, truth=True
    ),
    "eval.truth_count_chair_i": Metric(
        "Object mentions hallucinated or past the true count (truth, count-aware CHAIRi)", percent=True, truth=True
    ),
    # AMBER (training.amber) and MMHal-Bench (training.mmhal), where the config names their files.
    "eval.amber_chair": Metric("AMBER: nouns hallucinated (CHAIR)", percent=True, truth=True),
    "eval.amber_hal": Metric("AMBER: descriptions with a hallucination (Hal)", percent=True, truth=True),
    "eval.amber_cog": Metric("AMBER: hallucination targets named (Cog)", percent=True, truth=True),
    "eval.amber_cover": Metric("AMBER: true objects named (Cover)", percent=True, truth=True),
    "eval.amber_accuracy": Metric("AMBER: yes/no questions answered right (accuracy)", percent=True, truth=True),
    "eval.amber_f1": Metric("AMBER: F1 of the no answers", percent=True, truth=True),
    "eval.amber_existence_f1": Metric("AMBER: F1, existence questions", percent=True, truth=True),
    "eval.amber_attribute_f1": Metric("AMBER: F1, attribute questions", percent=True, truth=True),
    "eval.amber_relation_f1": Metric("AMBER: F1, relation questions", percent=True, truth=True),
    "eval.mmhal_hallucination_rate": Metric(
        "MMHal-Bench: answers the judge rates hallucinated (rating < 3)", percent=True, truth=True
    ),
    "eval.mmhal_score": Metric("MMHal-Bench: the judge's average rating (0-6)", truth=True),
    # What the answers look like (labeling.answer_shape): a policy that games the labeler shows here first.
    "eval.repetition_share": Metric("Held-out answers repeating a claim", percent=True),
    "eval.mean_repeated_claims": Metric("Repeated claims per held-out answer"),
    "eval.mean_distinct_claims": Metric("Distinct claims per held-out answer"),
    "eval.mean_words": Metric("Words per held-out answer"),
    "eval.truth_mean_words": Metric("Words per held-out answer (instructions with known objects)"),
    # The combine stage, where instructions carry their true objects.
    "feedback.labeler_accuracy": Metric("Labeler right on training claims (truth)", percent=True, truth=True),
    "feedback.claims_judged": Metric("Training claims checked against the truth"),
    "feedback.claims_unknown": Metric("Training claims the truth cannot settle"),
    "feedback.pairs_right": Metric("Pairs preferring the answer with fewer wrong objects (truth)", truth=True),
    "feedback.pairs_wrong": Metric("Pairs preferring the answer with more wrong objects (truth)", truth=True),
    "feedback.pairs_even": Metric("Pairs whose answers have as many wrong objects (truth)", truth=True),
    # The length balance's r: 0 means no chosen answer is shorter than its rejected one ("Length ratio allowed 0"
    # read as if balancing were off).
    "length_ratio": Metric(
        "Length balance: how much shorter a chosen answer may be than its rejected one", percent=True
    ),
    # The combine stage, always: what DPO will be taught to prefer, beside what it is taught to avoid.
    "pairs.chosen_repetition_share": Metric("Chosen answers repeating a claim", percent=True),
    "pairs.rejected_repetition_share": Metric("Rejected answers repeating a claim", percent=True),
    "pairs.chosen_mean_words": Metric("Words per chosen answer"),
    "pairs.rejected_mean_words": Metric("Words per rejected answer"),
    # The train stage.
    "train.pairs": Metric("Pairs trained on"),
    "train.steps": Metric("Optimizer steps"),
    "train.final_loss": Metric("Final DPO loss"),
}

SECTIONS = {
    "eval": "Held-out evaluation",
    "baseline": "The starting policy, evaluated the same way",
    "train": "Training",
    "pairs": "Training pairs, as combined",
    "feedback": "Training data against the truth",
}


def metric(key: str) -> Metric:
    """The key's label and unit; an unknown key is its own label. A baseline figure reads as the evaluation's."""
    if key.startswith("baseline."):
        key = "eval." + key.removeprefix("baseline.")
    return METRICS.get(key) or Metric(key)


def display(key: str, value: float) -> str:
    """The value as people read it: a share as a percentage, a whole number as one, else four digits."""
    if metric(key).percent:
        return f"{100 * value:.1f}%"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"


def numbers(metrics: dict | None, prefix: str = "") -> dict[str, float]:
    """The finite numeric entries of an iteration's metrics, nested dicts flattened one level ("eval.chair_s")."""
    out = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, dict) and not prefix:
            out |= numbers(value, f"{key}.")
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[prefix + key] = value
    return out


def ordered(keys) -> list[str]:
    """Known keys in the order of METRICS (each truth rate after the labeler's), then the others by name."""
    order = list(METRICS)

    def rank(key):
        known = "eval." + key.removeprefix("baseline.") if key.startswith("baseline.") else key
        return (order.index(known), key) if known in METRICS else (len(order), key)

    return sorted(keys, key=rank)


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    value: str


def figures(metrics: dict | None) -> list[tuple[str, list[Figure]]]:
    """The iteration's numbers for a table: (section title, figures), evaluation first."""
    values = numbers(metrics)
    sections: dict[str, list[Figure]] = {}
    for key in ordered(values):
        title = SECTIONS.get(key.split(".", 1)[0], "Other figures")
        sections.setdefault(title, []).append(Figure(key, metric(key).label, display(key, values[key])))
    rank = list(SECTIONS.values())
    return sorted(sections.items(), key=lambda item: rank.index(item[0]) if item[0] in rank else len(rank))
