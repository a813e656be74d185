"""AMBER (Wang et al., "An LLM-free Multi-dimensional Benchmark for MLLMs Hallucination Evaluation", 2023).

Ported from its authors' `inference.py` (github.com/junyangwang0410/AMBER at 534babf), reading the files as they
ship them in `data/`: `annotations.json`, `relation.json` (the word association), `safe_words.txt` and the query
files `query/query_*.json`; responses are `[{"id": 1, "response": "..."}, ...]`.

Generative task (descriptions): the response's nouns (NLTK's tokeniser, nouns by part of speech, WordNet lemmas)
that are among AMBER's words (relation.json's keys and values) are matched, in the reference's order, against the
image's true objects and their associated words, then against its listed hallucination targets:
- CHAIR = nouns that match no true object ÷ all AMBER nouns (the safe words count in the denominator, never as
  hallucinated);
- Cover = true objects mentioned ÷ true objects;
- Hal = descriptions with at least one hallucinated noun ÷ descriptions;
- Cog = hallucination targets mentioned ÷ hallucination targets (the "cognition" errors a model is prone to).
Discriminative task (yes/no questions): "No" is the positive class. Accuracy = right answers ÷ questions,
precision = right "No"s ÷ "No" answers, recall = right "No"s ÷ questions whose truth is no, F1 of the two; overall
and per dimension: existence, attribute (state, number, action) and relation.

Where the port differs from the authors' code:
- Lemmas: the WordNet lemmatizer's answers are tabled for AMBER's words (`data/amber_lemmas.tsv`, derived as
  `chair_lemmas` says), so no WordNet download is needed; a relation.json with words outside `data/amber_words.txt`
  (AMBER's release) gets its words matched as written only.
- Parts of speech: `nltk.pos_tag` as the reference when NLTK's tagger data is installed
  (`python -m nltk.downloader averaged_perceptron_tagger_eng`); without it (`rule_tags`) every token is read as a
  noun except "can" as a modal and the word after a modal, AMBER's commonest non-noun words (its safe words cover
  "orange", "light", "line", "sign").
- Near-synonyms: the reference also matches words whose spaCy `en_core_web_lg` similarity exceeds 0.8; here only
  identical words match unless `similar` is given (a function of two words), so spaCy is not a dependency.
- Figures are exact shares in [0, 1] (None where nothing was counted); the reference starts every denominator at
  0.001, prints percentages rounded to 0.1 and adds 0.0001 (existence: 0.001) to F1's denominator.
- Annotations are found by their `id`, where the reference reads position id - 1 (the same in AMBER's file).
"""

import json
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from labeling.backends.base import Backend, Sampling
from labeling.batching import batched
from labeling.generate import Instruction, generate_candidates
from training.chair import word_tokens

LEMMAS_FILE = Path(__file__).parent / "data" / "amber_lemmas.tsv"
GENERATIVE = "generative"
# The discriminative types of each dimension (annotations.json's "type"); any other type is a relation question.
DIMENSIONS = {
    "existence": ("discriminative-hallucination",),
    "attribute": (
        "discriminative-attribute-state",
        "discriminative-attribute-number",
        "discriminative-attribute-action",
    ),
    "state": ("discriminative-attribute-state",),
    "number": ("discriminative-attribute-number",),
    "action": ("discriminative-attribute-action",),
}
MODALS = {"can", "could", "will", "would", "may", "might", "must", "should", "shall"}
# What follows "can" as a modal in image descriptions ("can be seen", "cannot" -> "can not").
AFTER_MODAL_CAN = {"be", "also", "not", "n't", "see", "only", "still", "clearly", "easily", "just", "likely"}


class AmberFileError(ValueError):
    """An AMBER file is missing or not in the authors' format; the message names the file and the field."""


@dataclass(frozen=True)
class AmberData:
    annotations: dict[int, dict]  # id -> {"type", "truth", ("hallu")}
    association: dict[str, list[str]]  # relation.json: a word -> the words that count as it
    safe_words: frozenset[str]

    @property
    def vocabulary(self) -> frozenset[str]:
        """The reference's `hallucination_words`: every word the association names."""
        return frozenset(self.association) | {word for words in self.association.values() for word in words}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AmberFileError(f"{path}: no such file (AMBER's data folder holds it)") from None
    except json.JSONDecodeError as error:
        raise AmberFileError(f"{path}: not JSON ({error})") from None


def load_amber(folder) -> AmberData:
    """AMBER's `data` folder: annotations.json, relation.json and safe_words.txt, checked."""
    folder = Path(folder)
    relation_path, annotations_path = folder / "relation.json", folder / "annotations.json"
    association = _read_json(relation_path)
    if not isinstance(association, dict) or not all(
        isinstance(words, list) and all(isinstance(w, str) for w in words) for words in association.values()
    ):
        raise AmberFileError(f"{relation_path}: expected an object of word -> list of words")
    entries = _read_json(annotations_path)
    if not isinstance(entries, list):
        raise AmberFileError(f"{annotations_path}: expected a list of annotations")
    annotations = {}
    for n, entry in enumerate(entries):
        where = f"{annotations_path}: annotation {n}"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int) or not entry.get("type"):
            raise AmberFileError(f"{where}: needs an integer 'id' and a 'type'")
        if entry["type"] == GENERATIVE:
            for field in ("truth", "hallu"):
                words = entry.get(field)
                if not isinstance(words, list):
                    raise AmberFileError(f"{where} (id {entry['id']}): '{field}' must be a list of words")
                if unknown := [word for word in words if word not in association]:
                    raise AmberFileError(
                        f"{where} (id {entry['id']}): '{field}' words {unknown} are not keys of {relation_path}"
                    )
        elif entry.get("truth") not in ("yes", "no"):
            raise AmberFileError(f"{where} (id {entry['id']}): 'truth' must be 'yes' or 'no'")
        annotations[entry["id"]] = entry
    safe_path = folder / "safe_words.txt"
    try:
        safe_words = frozenset(safe_path.read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        raise AmberFileError(f"{safe_path}: no such file (AMBER's data folder holds it)") from None
    return AmberData(annotations, association, safe_words)


def load_queries(path) -> list[dict]:
    """A query file (`query/query_all.json`, ...): [{"id", "image", "query"}, ...], checked."""
    queries = _read_json(Path(path))
    if not isinstance(queries, list):
        raise AmberFileError(f"{path}: expected a list of queries")
    for n, query in enumerate(queries):
        if not isinstance(query, dict) or not isinstance(query.get("id"), int):
            raise AmberFileError(f"{path}: query {n} needs an integer 'id'")
        for field in ("image", "query"):
            if not isinstance(query.get(field), str) or not query[field]:
                raise AmberFileError(f"{path}: query {n} (id {query['id']}) needs '{field}'")
    return queries


@cache
def lemma_table() -> dict[str, str]:
    rows = (line.split("\t") for line in LEMMAS_FILE.read_text(encoding="utf-8").splitlines() if line)
    return {token: lemma for token, lemma in rows}


def rule_tags(tokens: Sequence[str]) -> list[tuple[str, str]]:
    """Parts of speech without a tagger model: nouns, except "can" as a modal and the verb after a modal."""
    tags = []
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token == "can" and following.lower() in AFTER_MODAL_CAN:
            tags.append((token, "MD"))
        elif i and tokens[i - 1].lower() in MODALS and tags[-1][1] == "MD":
            tags.append((token, "VB"))
        else:
            tags.append((token, "NN"))
    return tags


@cache
def default_tagger() -> Callable[[Sequence[str]], list[tuple[str, str]]]:
    """NLTK's `pos_tag`, the reference's, when its tagger data is installed; else `rule_tags`."""
    import nltk

    try:
        nltk.data.find("taggers/averaged_perceptron_tagger_eng/")
    except LookupError:
        return rule_tags
    return nltk.pos_tag


def nouns(text: str, tag: Callable | None = None) -> list[str]:
    """The reference's `extract_nouns`: tokens tagged NN*, lemmatised (case kept, as the reference keeps it)."""
    tagged = (tag or default_tagger())(word_tokens(text))
    table = lemma_table()
    return [table.get(word, word) for word, pos in tagged if pos.startswith("NN")]


def yes_no_reply(text: str) -> str:
    """A free answer as the reference compares it: "Yes" or "No" when its first word is yes or no, else as is."""
    words = text.strip().split(maxsplit=1)
    first = words[0].strip(string.punctuation).lower() if words else ""
    return {"yes": "Yes", "no": "No"}.get(first, text)


def _owners(words: Sequence[str], association: dict[str, list[str]]) -> tuple[list[str], list[int]]:
    """The reference's match list for true (or hallucination) words: every word's associated words, then the words
    themselves; and the index of the word each entry stands for."""
    listed, owners = [], []
    for i, word in enumerate(words):
        listed += association[word]
        owners += [i] * len(association[word])
    return listed + list(words), owners + list(range(len(words)))


def _first(noun: str, listed: Sequence[str], match: Callable[[str, str], bool]) -> int | None:
    return next((j for j, word in enumerate(listed) if match(noun, word)), None)


def describe_score(text: str, entry: dict, data: AmberData, similar=None, tag=None) -> dict:
    """One description against its annotation, as the reference scores it: its AMBER nouns, the hallucinated ones
    and which true objects and hallucination targets it mentions."""
    same = lambda a, b: a == b  # noqa: E731
    similar = similar or same
    vocabulary = data.vocabulary
    found = [noun for noun in nouns(text, tag) if noun in vocabulary]
    safe, safe_owner = _owners(entry["truth"], data.association)
    hallu, hallu_owner = _owners(entry["hallu"], data.association)
    covered, cognition, hallucinated = set(), set(), []
    for noun in found:
        if noun in data.safe_words:
            continue
        if (j := _first(noun, safe, same)) is not None:
            covered.add(safe_owner[j])
            continue
        for match in (same, similar):  # the reference marks an exact target, then the first similar one
            if (j := _first(noun, hallu, match)) is not None:
                cognition.add(hallu_owner[j])
        if (j := _first(noun, safe, similar)) is not None:
            covered.add(safe_owner[j])
            continue
        hallucinated.append(noun)
    return {"nouns": found, "hallucinated": hallucinated, "covered": len(covered), "cognition": len(cognition)}


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _yes_no_figures(rows: list[tuple[str, str]]) -> dict:
    """(truth, response) pairs: accuracy, and precision / recall / F1 of the "No" answers."""
    right = sum((truth == "yes" and reply == "Yes") or (truth == "no" and reply == "No") for truth, reply in rows)
    true_no = sum(truth == "no" for truth, _ in rows)
    said_no = sum(reply == "No" for _, reply in rows)
    both = sum(truth == "no" and reply == "No" for truth, reply in rows)
    precision, recall = _share(both, said_no), _share(both, true_no)
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "questions": len(rows),
        "accuracy": _share(right, len(rows)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def amber_scores(responses: Iterable[dict], data: AmberData, similar=None, tag=None) -> dict:
    """AMBER's figures of responses [{"id", "response"}]: "generative" and, per discriminative group ("all",
    "existence", "attribute", "state", "number", "action", "relation"), its yes/no figures; groups with no
    response are left out."""
    generative = {"descriptions": 0, "nouns": 0, "hallucinated": 0, "with_hallucination": 0}
    generative |= {"covered": 0, "truth": 0, "cognition": 0, "hallu": 0}
    groups: dict[str, list[tuple[str, str]]] = {}
    for row in responses:
        entry = data.annotations.get(row.get("id"))
        if entry is None:
            raise AmberFileError(f"response id {row.get('id')!r} has no annotation")
        if entry["type"] == GENERATIVE:
            scored = describe_score(row["response"], entry, data, similar, tag)
            generative["descriptions"] += 1
            generative["nouns"] += len(scored["nouns"])
            generative["hallucinated"] += len(scored["hallucinated"])
            generative["with_hallucination"] += bool(scored["hallucinated"])
            generative["covered"] += scored["covered"]
            generative["truth"] += len(entry["truth"])
            generative["cognition"] += scored["cognition"]
            generative["hallu"] += len(entry["hallu"])
            continue
        kinds = [name for name, types in DIMENSIONS.items() if entry["type"] in types] or ["relation"]
        for name in ["all", *kinds]:
            groups.setdefault(name, []).append((entry["truth"], row["response"]))
    result = {name: _yes_no_figures(rows) for name, rows in groups.items()}
    if generative["descriptions"]:
        result["generative"] = generative | {
            "chair": _share(generative["hallucinated"], generative["nouns"]),
            "cover": _share(generative["covered"], generative["truth"]),
            "hal": _share(generative["with_hallucination"], generative["descriptions"]),
            "cog": _share(generative["cognition"], generative["hallu"]),
        }
    return result


def answer_queries(
    policy: Backend,
    queries: Sequence[dict],
    images,
    data: AmberData,
    sampling: Sampling,
    seed: int = 0,
    batch_size: int = 8,
    progress: Callable[[int], None] = lambda done: None,
) -> list[dict]:
    """The policy answers each query once (images from the `images` folder: AMBER_1.jpg, ...); a yes/no question's
    answer is read as "Yes" / "No" (`yes_no_reply`). Returns the reference's response rows."""
    instructions = []
    for query in queries:
        image = Path(images, query["image"])
        if not image.is_file():
            raise AmberFileError(f"{image}: no such image (query id {query['id']}, field 'image')")
        if query["id"] not in data.annotations:
            raise AmberFileError(f"query id {query['id']} ({query['image']}) has no annotation")
        instructions.append(Instruction(id=query["id"], image=image, question=query["query"]))
    rows = []
    for batch in batched(instructions, batch_size):
        for answer in generate_candidates(policy, batch, 1, sampling, seed):
            generative = data.annotations[answer.instruction_id]["type"] == GENERATIVE
            text = answer.text if generative else yes_no_reply(answer.text)
            rows.append({"id": answer.instruction_id, "response": text})
        progress(len(rows))
    return rows
