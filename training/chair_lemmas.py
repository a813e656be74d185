"""The singular forms CHAIR reads words as: NLTK's WordNet lemmatizer, tabled for the words that matter.

The reference lowercases a caption, tokenises it with NLTK and replaces every token by
`WordNetLemmatizer().lemmatize(token)` (a noun's WordNet base form; "glasses" -> "glass", "men" -> "man",
"skis" -> "ski", "people" stays) before it looks for COCO words. The WordNet corpus is a download that
is not possible everywhere this runs, so the lemmatizer's answers are precomputed, once, for every token
whose answer can change a mention: tokens that lemmatise to a word of the synonym list or of the two-word
rules (`coco_synonyms.RELEVANT_WORDS`), and such words that lemmatise to something else. Every other token
plays no part in CHAIR whatever its lemma, so the table is exact for CHAIR, not an approximation.

`data/chair_lemmas.tsv` (token, tab, lemma) is what `derive` wrote from WordNet 3.0 (Debian's
`wordnet-base`, the same files as NLTK's `wordnet` corpus):

    python -m training.chair_lemmas --wordnet /usr/share/wordnet
"""

import argparse
import tempfile
from functools import cache
from pathlib import Path

from training.coco_synonyms import RELEVANT_WORDS

LEMMAS_FILE = Path(__file__).parent / "data" / "chair_lemmas.tsv"
WORDNET_FILES = [f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv")]
EXCEPTION_FILES = ["noun.exc", "verb.exc", "adj.exc", "adv.exc"]


@cache
def lemma_table() -> dict[str, str]:
    """token -> lemma for the tokens whose lemma differs from them and matters to CHAIR."""
    rows = (line.split("\t") for line in LEMMAS_FILE.read_text(encoding="utf-8").splitlines() if line)
    return {token: lemma for token, lemma in rows}


def lemmatize(token: str) -> str:
    """What the reference's WordNet lemmatizer makes of `token`, wherever that can change a CHAIR mention."""
    return lemma_table().get(token, token)


def _install_wordnet(wordnet_dir: Path) -> None:
    """Lay the WordNet files out as NLTK's `wordnet` corpus in a fresh data folder NLTK searches first."""
    import nltk

    data = Path(tempfile.mkdtemp(prefix="nltk-data-"))
    corpus = data / "corpora" / "wordnet"
    corpus.mkdir(parents=True)
    for name in [*WORDNET_FILES, *EXCEPTION_FILES]:
        (corpus / name).write_bytes(Path(wordnet_dir, name).read_bytes())
    for name in ("lexnames", "index.sense", "cntlist.rev"):  # NLTK wants them; lemmatizing never reads them
        (corpus / name).write_text("")
    nltk.data.path.insert(0, str(data))


def _candidates(wordnet, wordnet_dir: Path, relevant: frozenset[str]) -> set[str]:
    """Every WordNet word and exception form, and the inflections morphy's noun rules undo, twice over."""
    words = {lemma for lemma in wordnet.all_lemma_names() if "_" not in lemma}
    for name in EXCEPTION_FILES:
        words |= {line.split()[0] for line in Path(wordnet_dir, name).read_text().splitlines() if line.strip()}
    rules = wordnet.MORPHOLOGICAL_SUBSTITUTIONS["n"]
    inflected = set(relevant)
    for _ in range(2):
        inflected |= {
            word[: len(word) - len(new)] + old for word in inflected for old, new in rules if word.endswith(new)
        }
    return words | inflected


def derive(wordnet_dir, relevant: frozenset[str] = RELEVANT_WORDS) -> dict[str, str]:
    """The lemma table for the words that matter (`relevant`: CHAIR's, or AMBER's for `training.amber`), computed
    by NLTK's own lemmatizer on the WordNet files in `wordnet_dir`."""
    _install_wordnet(Path(wordnet_dir))
    from nltk.corpus import wordnet
    from nltk.stem import WordNetLemmatizer

    lemmatizer = WordNetLemmatizer()  # the reference's lemmatizer, called as the reference calls it
    table = {}
    for token in sorted(_candidates(wordnet, Path(wordnet_dir), relevant)):
        lemma = lemmatizer.lemmatize(token)
        if lemma != token and (lemma in relevant or token in relevant):
            table[token] = lemma
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", required=True, help="a WordNet 3.0 dict folder (index.noun, noun.exc, ...)")
    parser.add_argument("--out", default=str(LEMMAS_FILE))
    parser.add_argument("--words", help="the words that matter, one a line (default: CHAIR's)")
    args = parser.parse_args(argv)
    relevant = frozenset(Path(args.words).read_text(encoding="utf-8").split()) if args.words else RELEVANT_WORDS
    table = derive(args.wordnet, relevant)
    Path(args.out).write_text("".join(f"{token}\t{lemma}\n" for token, lemma in table.items()), encoding="utf-8")
    print(f"{len(table)} lemmas written to {args.out}")


if __name__ == "__main__":
    main()
