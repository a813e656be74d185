"""CHAIR, as Object HalBench computes it (docs/DESIGN.md §1, Evaluate), from COCO-format ground truth.

An answer's object mentions are found as the reference finds them (class `CHAIR` in RLAIF-V's
`eval/eval_gpt_obj_halbench.py`, its rule-based path): the answer is lowercased and tokenised with NLTK,
each token replaced by its WordNet lemma (`chair_lemmas`), pairs of words joined by the two-word rules
(`coco_synonyms.DOUBLE_WORDS`: "hot dog", "baby elephant" -> elephant, "train track" -> nothing), "seat"
dropped when a toilet is named, and the words of the reference's synonym list mapped to the 80 COCO
classes. An image's ground truth is the classes of its instance annotations plus the classes its
reference captions mention (read the same way). A mention whose class is not in the ground truth is
hallucinated.
- CHAIRs = answers with at least one hallucinated mention ÷ answers mentioning at least one COCO object
  (Object HalBench's "response hallucination", the `CHAIRs_refine` of its script);
- CHAIRi = hallucinated mentions ÷ all mentions (its "object hallucination"); a class named twice counts twice;
- recall = ground-truth classes an answer names ÷ ground-truth classes, summed over answers.

Object HalBench can also ask GPT to extract the objects first: `training.object_extraction`, an option. Sentences
are split by NLTK's Punkt without its trained English parameters (a download): the two differ only at
abbreviations such as "mr." or "dr.", which name no COCO object.
"""

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktSentenceTokenizer

from training.chair_lemmas import lemmatize
from training.coco_synonyms import CLASS_OF, DOUBLE_WORDS

_SENTENCES = PunktSentenceTokenizer()
_TOKENS = NLTKWordTokenizer()  # what nltk.word_tokenize runs on each sentence


def word_tokens(text: str) -> list[str]:
    """What `nltk.word_tokenize(text)` returns (sentences split by Punkt without its trained parameters: above)."""
    return [token for sentence in _SENTENCES.tokenize(text) for token in _TOKENS.tokenize(sentence)]


def caption_words(text: str) -> list[str]:
    """The reference's words of a text: lowercased, tokenised, lemmatised, two-word phrases read as one."""
    lemmas = [lemmatize(token) for token in word_tokens(text.lower())]
    words = []
    i = 0
    while i < len(lemmas):
        pair = " ".join(lemmas[i : i + 2])
        if pair in DOUBLE_WORDS:
            words.append(DOUBLE_WORDS[pair])
            i += 2
        else:
            words.append(lemmas[i])
            i += 1
    return words


def object_mentions(text: str) -> list[tuple[str, str]]:
    """(word, COCO class) for every object the text names, in order, as the reference counts them."""
    words = caption_words(text)
    if "toilet" in words and "seat" in words:  # "the seat of the toilet" names no chair
        words = [word for word in words if word != "seat"]
    return [(word, CLASS_OF[word]) for word in words if word in CLASS_OF]


@dataclass
class GroundTruth:
    """Per COCO image id: the classes present, and the image's entry (file_name, width, height)."""

    objects: dict[int, set[str]]
    images: dict[int, dict]


def _paths(files) -> list[Path]:
    return [Path(files)] if isinstance(files, str | Path) else [Path(file) for file in files]


def load_ground_truth(instances, captions, image_ids: set[int] | None = None) -> GroundTruth:
    """Read COCO instances and captions JSON; keep only `image_ids` when given (the files can be large).

    Each of `instances` and `captions` is one file or a list of them, merged: the reference builds its ground
    truth from COCO train and val 2014 together (an image's classes are the union over all files).
    """
    wanted = (lambda image_id: image_id in image_ids) if image_ids is not None else (lambda image_id: True)
    images: dict[int, dict] = {}
    objects: dict[int, set[str]] = {}
    for path in _paths(instances):
        data = json.loads(path.read_text())
        names = {category["id"]: category["name"] for category in data["categories"]}
        for image in data["images"]:
            if wanted(image["id"]):
                images[image["id"]] = image
                objects.setdefault(image["id"], set())
        for annotation in data["annotations"]:
            if wanted(annotation["image_id"]):
                objects.setdefault(annotation["image_id"], set()).add(CLASS_OF[names[annotation["category_id"]]])
    for path in _paths(captions):
        for annotation in json.loads(path.read_text())["annotations"]:
            if wanted(annotation["image_id"]):
                found = {name for _, name in object_mentions(annotation["caption"])}
                objects.setdefault(annotation["image_id"], set()).update(found)
    return GroundTruth(objects=objects, images=images)


@dataclass
class ChairResult:
    """Counts behind CHAIR; `per_answer` lists each answer's mentions and the hallucinated ones."""

    answers: int = 0
    answers_with_objects: int = 0
    hallucinated_answers: int = 0
    mentions: int = 0
    hallucinated_mentions: int = 0
    recalled: int = 0
    ground_truth: int = 0
    per_answer: list[dict] = field(default_factory=list)

    @property
    def chair_s(self) -> float | None:
        return self.hallucinated_answers / self.answers_with_objects if self.answers_with_objects else None

    @property
    def chair_i(self) -> float | None:
        return self.hallucinated_mentions / self.mentions if self.mentions else None

    @property
    def recall(self) -> float | None:
        return self.recalled / self.ground_truth if self.ground_truth else None

    def summary(self) -> dict:
        counts = {k: v for k, v in vars(self).items() if k != "per_answer"}
        return {"chair_s": self.chair_s, "chair_i": self.chair_i, "recall": self.recall, **counts}


def chair(
    answers: Iterable[tuple[int, str]], truth: dict[int, set[str]], mentions: Sequence[list] | None = None
) -> ChairResult:
    """CHAIR of (COCO image id, answer) pairs against per-image ground-truth classes.

    `mentions`, one list of (word, class) per answer, replaces the rule-based reading (`object_mentions`): the
    objects a chat model listed (`training.object_extraction`).
    """
    result = ChairResult()
    for n, (image_id, text) in enumerate(answers):
        if image_id not in truth:
            raise ValueError(f"image {image_id} has no ground truth")
        present = truth[image_id]
        mentions_here = object_mentions(text) if mentions is None else mentions[n]
        hallucinated = [words for words, name in mentions_here if name not in present]
        result.answers += 1
        result.answers_with_objects += bool(mentions_here)
        result.hallucinated_answers += bool(hallucinated)
        result.mentions += len(mentions_here)
        result.hallucinated_mentions += len(hallucinated)
        result.recalled += len({name for _, name in mentions_here} & present)
        result.ground_truth += len(present)
        result.per_answer.append(
            {"image_id": image_id, "mentions": [name for _, name in mentions_here], "hallucinated": hallucinated}
        )
    return result


def find_image_ids(truth: GroundTruth, folder, images: dict[str, tuple[int, int, int]]) -> dict[str, int]:
    """COCO ids of images given as sha256 -> (width, height, bytes), found by content among `folder`'s files.

    Imported images keep their bytes but not their file names, so they are matched by content; only files
    whose size in pixels and bytes agree with some wanted image are read and hashed.
    """
    by_shape: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for entry in truth.images.values():
        by_shape[entry["width"], entry["height"]].append(entry)
    found: dict[str, int] = {}
    hashed: dict[Path, str] = {}
    for sha256, (width, height, size) in images.items():
        for entry in by_shape.get((width, height), []):
            path = Path(folder, entry["file_name"])
            if path not in hashed:
                if not path.is_file() or path.stat().st_size != size:
                    continue
                hashed[path] = hashlib.sha256(path.read_bytes()).hexdigest()
            if hashed[path] == sha256:
                found[sha256] = entry["id"]
                break
    return found
