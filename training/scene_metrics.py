"""AMBER-style evaluation of world-2 answers (`labeling.scenes`), against the truth of every picture.

AMBER (Wang et al., 2023) scores a model two ways, both here:
- generative, on descriptions: CHAIR (hallucinated object kinds among those mentioned), Cover (true kinds
  mentioned among those present), Hal (answers with a hallucinated kind) and Cog (hallucinated kinds that a habit
  explains: an absent companion of an anchor the picture holds, `scenes.COMPANIONS`). Count-aware beside them:
  a kind said to be there more times than it is counts the surplus as hallucinated (`count_chair`), so naming an
  object twice is not free; and claim by claim, every sentence judged (counts, attributes, relations), an
  unreadable sentence counting as wrong (`claim_error`), so a policy cannot gain by writing broken text.
- discriminative, on yes/no probes (`scene_text.probes`): accuracy and F1 (yes as the positive answer) on
  existence, attribute and relation questions, and on all.

An answer's record holds counts, not ratios, so a bench can resample answers (or pictures) and recompute every
figure with `summarise` for its interval.
"""

from collections import Counter
from collections.abc import Iterable, Sequence

from labeling import scene_text
from labeling.scenes import Scene

RECORD_FIELDS = (
    "answers",
    "mentioned",
    "hallucinated",
    "habit",
    "covered",
    "present",
    "hallucinated_answers",
    "stated",
    "surplus",
    "claims",
    "wrong_claims",
    "unreadable",
    "attribute_claims",
    "wrong_attributes",
    "relation_claims",
    "wrong_relations",
    "repeating_answers",
    "words",
)


def mentioned_kinds(facts: Iterable[scene_text.Fact]) -> set[str]:
    """The kinds an answer says are there: every kind its facts name, but a count of zero ("there are no red
    circles") mentions none."""
    kinds = set()
    for fact in facts:
        if fact.kind == "count" and fact.value == 0:
            continue
        kinds.add(fact.subject)
        if fact.kind in ("left_of", "above", "inside"):
            kinds.add(fact.value)
    return kinds


def answer_record(text: str, scene: Scene) -> dict:
    """One answer's counts against its picture's truth."""
    said = scene_text.sentences(text)
    parsed = [scene_text.parse(s) for s in said]
    facts = [f for f in parsed if f is not None]
    truth = scene.counts
    mentioned = mentioned_kinds(facts)
    hallucinated = {k for k in mentioned if not truth[k]}
    habits = set(scene_text.absent_companions(scene))
    stated = Counter()
    for fact in facts:
        if fact.kind == "count":
            stated[fact.subject] += fact.value
    wrong = [f for f in facts if not scene_text.is_true(f, scene)]
    attributes = [f for f in facts if f.kind in ("size", "pattern")]
    relations = [f for f in facts if f.kind in ("left_of", "above", "inside")]
    return {
        "answers": 1,
        "mentioned": len(mentioned),
        "hallucinated": len(hallucinated),
        "habit": len(hallucinated & habits),
        "covered": len(mentioned & set(truth)),
        "present": len(truth),
        "hallucinated_answers": int(bool(hallucinated)),
        "stated": sum(stated.values()),
        "surplus": sum((stated - truth).values()),
        "claims": len(said),
        "wrong_claims": len(wrong) + parsed.count(None),
        "unreadable": parsed.count(None),
        "attribute_claims": len(attributes),
        "wrong_attributes": sum(f in wrong for f in attributes),
        "relation_claims": len(relations),
        "wrong_relations": sum(f in wrong for f in relations),
        "repeating_answers": int(len(set(facts)) < len(facts)),
        "words": len(text.split()),
    }


def summarise(records: Sequence[dict]) -> dict:
    """The generative figures of a set of answers (ratios of summed counts), with the counts."""
    total = {name: sum(r[name] for r in records) for name in RECORD_FIELDS}

    def ratio(a: str, b: str) -> float | None:
        return total[a] / total[b] if total[b] else None

    return {
        "chair": ratio("hallucinated", "mentioned"),
        "cover": ratio("covered", "present"),
        "hal": ratio("hallucinated_answers", "answers"),
        "cog": ratio("habit", "mentioned"),
        "count_chair": ratio("surplus", "stated"),
        "claim_error": ratio("wrong_claims", "claims"),
        "attribute_error": ratio("wrong_attributes", "attribute_claims"),
        "relation_error": ratio("wrong_relations", "relation_claims"),
        "unreadable": ratio("unreadable", "claims"),
        "repetition": ratio("repeating_answers", "answers"),
        "claims_per_answer": ratio("claims", "answers"),
        "words_per_answer": ratio("words", "answers"),
        **total,
    }


def discriminative(answers: Iterable[tuple[scene_text.Probe, bool | None]]) -> dict:
    """Accuracy and F1 (yes as positive) per probe kind and over all: (probe, answered yes?) pairs; no answer
    (None) counts as wrong."""
    tallies: dict[str, Counter] = {}
    for probe, said_yes in answers:
        for kind in (probe.kind, "all"):
            tally = tallies.setdefault(kind, Counter())
            tally["probes"] += 1
            tally["correct"] += said_yes is not None and said_yes == probe.truth
            tally["true_yes"] += bool(said_yes) and probe.truth
            tally["said_yes"] += bool(said_yes)
            tally["truly_yes"] += probe.truth
    figures = {}
    for kind, t in tallies.items():
        precision = t["true_yes"] / t["said_yes"] if t["said_yes"] else 0.0
        recall = t["true_yes"] / t["truly_yes"] if t["truly_yes"] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        figures[kind] = {"accuracy": t["correct"] / t["probes"], "f1": f1, "yes_rate": t["said_yes"] / t["probes"]}
        figures[kind] |= {"probes": t["probes"]}
    return figures
