"""AMBER's figures on small files written in its authors' format, against values worked out by hand.

relation.json: dog -> [puppy], grass -> [ground], person -> [man, woman], car -> [vehicle], cat, frisbee, ball,
tree, bench, can, orange -> []; safe_words.txt: orange, line. Nouns are read without NLTK's tagger data (`rule_tags`).

Descriptions (AMBER nouns in order; ✓ covers a true object, ✗ hallucinated, · a safe word, never hallucinated):
- 1: truth dog, grass, person; targets frisbee, ball, cat.
  "Two dogs play on the ground with a puppy. The frisbee lies near an orange cat. A bench can be seen."
  dog ✓(dog), ground ✓(grass), puppy ✓(dog), frisbee ✗ (a target), orange ·, cat ✗ (a target), bench ✗;
  "can be seen" is a modal, not a can. 7 nouns, 3 hallucinated; covers 2 of 3; targets named 2 of 3.
- 2: truth car; targets person, tree. "A red vehicle is parked by the trees. Cars can not fly."
  vehicle ✓(car), tree ✗ (a target; "trees" -> tree); "Cars" is not lemmatised (the reference keeps case).
  2 nouns, 1 hallucinated; covers 1 of 1; targets 1 of 2.
- 3: truth cat; target dog. "A cat." -> cat ✓: 1 noun, none hallucinated; covers 1 of 1; targets 0 of 1.
CHAIR = (3 + 1 + 0) / (7 + 2 + 1) = 0.4;  Cover = (2 + 1 + 1) / (3 + 1 + 1) = 0.8
Hal = 2 of 3 descriptions;  Cog = (2 + 1 + 0) / (3 + 2 + 1) = 0.5

Yes/no questions (truth, answer; "No" is the positive class):
- 4 existence no, No (right, a true "No");  5 existence yes, No (wrong)
- 6 attribute-state no, Yes (wrong);  7 attribute-number yes, Yes (right);  8 attribute-action no, No (right)
- 9 discriminative-relation no, No (right);  10 relation yes, "Maybe" (wrong, and not a "No")
all: accuracy 4/7; "No" answers 4 (4, 5, 8, 9), true noes 4 (4, 6, 8, 9), both 3: P = R = 3/4, F1 = 0.75
existence: accuracy 1/2, P = 1/2, R = 1/1, F1 = 2 · 0.5 · 1 / 1.5 = 2/3
attribute: accuracy 2/3, P = 1/1, R = 1/2, F1 = 2/3;  relation: accuracy 1/2, P = R = F1 = 1
state: accuracy 0, no "No" answer: P and F1 None, R = 0
"""

import json
from pathlib import Path

import pytest
from PIL import Image

from labeling.backends.base import Sampling
from training.__main__ import main
from training.amber import (
    AmberFileError,
    amber_scores,
    answer_queries,
    describe_score,
    lemma_table,
    load_amber,
    load_queries,
    nouns,
    rule_tags,
)
from training.chair_lemmas import derive

RELATION = {
    "dog": ["puppy"],
    "grass": ["ground"],
    "person": ["man", "woman"],
    "car": ["vehicle"],
    **{word: [] for word in ("cat", "frisbee", "ball", "tree", "bench", "can", "orange")},
}
ANNOTATIONS = [
    {"id": 1, "type": "generative", "truth": ["dog", "grass", "person"], "hallu": ["frisbee", "ball", "cat"]},
    {"id": 2, "type": "generative", "truth": ["car"], "hallu": ["person", "tree"]},
    {"id": 3, "type": "generative", "truth": ["cat"], "hallu": ["dog"]},
    {"id": 4, "type": "discriminative-hallucination", "truth": "no"},
    {"id": 5, "type": "discriminative-hallucination", "truth": "yes"},
    {"id": 6, "type": "discriminative-attribute-state", "truth": "no"},
    {"id": 7, "type": "discriminative-attribute-number", "truth": "yes"},
    {"id": 8, "type": "discriminative-attribute-action", "truth": "no"},
    {"id": 9, "type": "discriminative-relation", "truth": "no"},
    {"id": 10, "type": "relation", "truth": "yes"},
]
RESPONSES = [
    {
        "id": 1,
        "response": "Two dogs play on the ground with a puppy. The frisbee lies near an orange cat. "
        "A bench can be seen.",
    },  # fmt: skip
    {"id": 2, "response": "A red vehicle is parked by the trees. Cars can not fly."},
    {"id": 3, "response": "A cat."},
    *({"id": i, "response": r} for i, r in enumerate(["No", "No", "Yes", "Yes", "No", "No", "Maybe"], start=4)),
]


def write_amber(folder: Path, annotations=ANNOTATIONS, relation=RELATION) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "annotations.json").write_text(json.dumps(annotations))
    (folder / "relation.json").write_text(json.dumps(relation))
    (folder / "safe_words.txt").write_text("orange\nline\n")
    return folder


@pytest.fixture
def data(tmp_path):
    return load_amber(write_amber(tmp_path / "data"))


def test_it_scores_descriptions_and_yes_no_answers_as_the_authors_script(data):
    scores = amber_scores(RESPONSES, data, tag=rule_tags)

    generative = scores["generative"]
    assert (generative["nouns"], generative["hallucinated"], generative["descriptions"]) == (10, 4, 3)
    assert generative["chair"] == pytest.approx(0.4)
    assert generative["cover"] == pytest.approx(0.8)
    assert generative["hal"] == pytest.approx(2 / 3)
    assert generative["cog"] == pytest.approx(0.5)
    expected = {
        "all": (7, 4 / 7, 3 / 4, 3 / 4, 0.75),
        "existence": (2, 1 / 2, 1 / 2, 1.0, 2 / 3),
        "attribute": (3, 2 / 3, 1.0, 1 / 2, 2 / 3),
        "relation": (2, 1 / 2, 1.0, 1.0, 1.0),
        "number": (1, 1.0, None, None, None),
    }
    for group, (questions, accuracy, precision, recall, f1) in expected.items():
        got = scores[group]
        assert got["questions"] == questions, group
        assert got["accuracy"] == pytest.approx(accuracy), group
        assert got["precision"] == pytest.approx(precision) if precision else got["precision"] is None, group
        assert got["recall"] == pytest.approx(recall) if recall else got["recall"] is None, group
        assert got["f1"] == pytest.approx(f1) if f1 else got["f1"] is None, group
    state = scores["state"]
    assert (state["accuracy"], state["precision"], state["recall"], state["f1"]) == (0.0, None, 0.0, None)


def test_a_word_listed_under_an_earlier_true_object_covers_that_object_only(tmp_path):
    # The reference lists every true object's associated words first, then the objects, and takes the first match:
    # "ground" is grass's associated word before it is an object of its own, so it covers grass, not ground.
    relation = {"grass": ["ground"], "ground": ["floor"]}
    data = load_amber(write_amber(tmp_path, [], relation))
    entry = {"id": 1, "type": "generative", "truth": ["grass", "ground"], "hallu": []}
    assert describe_score("The ground.", entry, data, tag=rule_tags)["covered"] == 1


def test_near_synonyms_count_when_a_similarity_is_given(data):
    entry = ANNOTATIONS[0]
    text = "A bench."
    assert describe_score(text, entry, data, tag=rule_tags)["hallucinated"] == ["bench"]
    similar = lambda a, b: {a, b} == {"bench", "grass"}  # noqa: E731  (spaCy's similarity > 0.8 in the reference)
    scored = describe_score(text, entry, data, similar=similar, tag=rule_tags)
    assert (scored["hallucinated"], scored["covered"]) == ([], 1)


def test_without_a_tagger_can_is_a_noun_unless_it_is_a_modal():
    assert nouns("A soda can is here. A dog can be seen.", tag=rule_tags).count("can") == 1


def test_the_lemma_table_is_what_nltks_wordnet_lemmatizer_gives_for_ambers_words():
    wordnet = Path("/usr/share/wordnet")  # Debian's wordnet-base: WordNet 3.0, NLTK's corpus files
    if not (wordnet / "index.noun").is_file():
        pytest.skip("WordNet 3.0 is not installed (apt-get install wordnet-base)")
    words = Path(__file__).parent.parent / "training" / "data" / "amber_words.txt"
    assert derive(wordnet, frozenset(words.read_text().split())) == lemma_table()


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ([{"id": 1, "type": "generative", "truth": ["unicorn"], "hallu": []}], r"'truth' words \['unicorn'\]"),
        ([{"id": 1, "type": "generative", "truth": ["dog"]}], "'hallu' must be a list"),
        ([{"id": 1, "type": "discriminative-hallucination", "truth": "maybe"}], "'truth' must be 'yes' or 'no'"),
        ([{"type": "generative"}], "integer 'id'"),
    ],
)
def test_a_bad_annotation_file_is_refused_naming_the_file_and_field(tmp_path, annotations, message):
    write_amber(tmp_path, annotations)
    with pytest.raises(AmberFileError, match=message) as error:
        load_amber(tmp_path)
    assert "annotations.json" in str(error.value)


def test_a_missing_file_and_a_bad_query_are_named(tmp_path):
    with pytest.raises(AmberFileError, match="relation.json: no such file"):
        load_amber(tmp_path)
    (tmp_path / "query.json").write_text(json.dumps([{"id": 1, "image": "AMBER_1.jpg"}]))
    with pytest.raises(AmberFileError, match=r"query.json: query 0 \(id 1\) needs 'query'"):
        load_queries(tmp_path / "query.json")


class CannedPolicy:
    """A backend answering each question with a fixed text (AMBER's own scoring is what is tested here)."""

    def __init__(self, answers):
        self.answers = answers

    def generate(self, requests, sampling):
        return [[self.answers[request.question] for _ in request.seeds] for request in requests]


def test_the_policy_answers_the_queries_and_yes_no_answers_are_read_as_the_reference_compares_them(data, tmp_path):
    Image.new("RGB", (8, 8), "green").save(tmp_path / "AMBER_1.jpg")
    queries = [
        {"id": 1, "image": "AMBER_1.jpg", "query": "Describe this image."},
        {"id": 4, "image": "AMBER_1.jpg", "query": "Is there a cat in this image?"},
        {"id": 5, "image": "AMBER_1.jpg", "query": "Is there a dog in this image?"},
    ]
    policy = CannedPolicy({
        "Describe this image.": "Yes. A dog.", "Is there a cat in this image?": "no, there is not.",
        "Is there a dog in this image?": "Yes.",
    })  # fmt: skip
    rows = answer_queries(policy, queries, tmp_path, data, Sampling(temperature=0.0))
    assert rows == [{"id": 1, "response": "Yes. A dog."}, {"id": 4, "response": "No"}, {"id": 5, "response": "Yes"}]
    with pytest.raises(AmberFileError, match="AMBER_2.jpg: no such image"):
        answer_queries(policy, [queries[0] | {"image": "AMBER_2.jpg"}], tmp_path, data, Sampling())


def test_the_command_prints_the_figures(tmp_path, capsys, monkeypatch):
    import training.amber

    monkeypatch.setattr(training.amber, "default_tagger", lambda: rule_tags)  # where NLTK's tagger is installed
    write_amber(tmp_path / "data")
    (tmp_path / "responses.json").write_text(json.dumps(RESPONSES))
    assert main(["amber", "--responses", str(tmp_path / "responses.json"), "--data", str(tmp_path / "data")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["generative"]["chair"] == pytest.approx(0.4) and printed["all"]["f1"] == pytest.approx(0.75)
