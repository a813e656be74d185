"""The words CHAIR reads as COCO objects: the reference's synonym list and its two-word rules.

`data/chair_synonyms_refine.txt` is the list RLAIF-V's Object HalBench evaluation reads (provenance in
`data/README.md`): one line per COCO class, the class first, then its synonyms. The two-word rules are
the reference's (class `CHAIR` in RLAIF-V's `eval/eval_gpt_obj_halbench.py`): every synonym of two or more
words stands for itself, "home plate" and "train track" are read as a whole and name nothing, "baby" /
"adult" + an animal word is that animal, "passenger jet" / "passenger train" the vehicle, "bow tie" a tie,
"toilet seat" a toilet and "wine glas" (what an old singulariser made of "wine glass") a wine glass. Only
pairs of words are ever looked up, so a three-word synonym ("stove top oven") can never match.
"""

from pathlib import Path

SYNONYMS_FILE = Path(__file__).parent / "data" / "chair_synonyms_refine.txt"


def _read_synonyms(path: Path) -> dict[str, list[str]]:
    synonyms: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = [word.strip() for word in line.strip().split(", ")]
        synonyms[words[0]] = list(dict.fromkeys(words))  # the file repeats a few words ("guy", "lamb")
    return synonyms


SYNONYMS: dict[str, list[str]] = _read_synonyms(SYNONYMS_FILE)
CLASS_OF: dict[str, str] = {word: name for name, words in SYNONYMS.items() for word in words}

_ANIMALS = ["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub"]
DOUBLE_WORDS: dict[str, str] = {
    **{word: word for word in CLASS_OF if " " in word},
    "home plate": "home plate",
    "train track": "train track",
    **{f"{age} {animal}": animal for animal in _ANIMALS for age in ("baby", "adult")},
    "passenger jet": "jet",
    "passenger train": "train",
    "bow tie": "tie",
    "toilet seat": "toilet",
    "wine glas": "wine glass",
}

# Every word that can take part in a mention: what the lemma table (`chair_lemmas`) must get right.
RELEVANT_WORDS: frozenset[str] = frozenset(part for phrase in [*CLASS_OF, *DOUBLE_WORDS] for part in phrase.split(" "))
