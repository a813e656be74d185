"""Step 3: each distinct (image, question) is asked once and its verdict shared, in the claims' order."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from labeling.backends.base import PolarQuery, YesNo
from labeling.backends.transformers_backend import TransformersBackend
from labeling.conquer import label_claims, labeler_prompt
from labeling.sample_images import save_sample_images


@dataclass(frozen=True)
class Claim:
    image: Path
    question: str


class RecordingLabeler:
    """Answers from a fixed rule and records every call, so tests see exactly what was asked."""

    def __init__(self):
        self.calls = []

    def yes_no(self, queries):
        self.calls.append(list(queries))
        return [YesNo(p_yes=0.9, p_no=0.1) if "cat" in q.prompt else YesNo(0.2, 0.7) for q in queries]


CLAIMS = [
    Claim(Path("a.png"), "Is there a cat?"),
    Claim(Path("a.png"), "Is there a dog?"),
    Claim(Path("b.png"), "Is there a cat?"),
    Claim(Path("a.png"), "is  there a CAT?"),
    Claim(Path("b.png"), "Is there a cat?"),
    Claim(Path("a.png"), "Is there a dog?"),
]


def test_it_asks_each_distinct_question_about_an_image_once():
    labeler = RecordingLabeler()

    verdicts, stats = label_claims(labeler, CLAIMS)

    asked = [(q.image.name, q.prompt) for call in labeler.calls for q in call]
    assert asked == [
        ("a.png", "Is there a cat? Please answer yes or no."),
        ("a.png", "Is there a dog? Please answer yes or no."),
        ("a.png", "is there a CAT? Please answer yes or no."),
        ("b.png", "Is there a cat? Please answer yes or no."),
    ]
    assert (stats.claims, stats.unique) == (6, 4)
    assert stats.share_saved == pytest.approx(1 / 3)


def test_it_returns_verdicts_in_the_claims_order():
    verdicts, _ = label_claims(RecordingLabeler(), CLAIMS)

    assert [v.accepted for v in verdicts] == [True, False, True, False, True, False]


def test_questions_that_differ_only_in_case_get_a_verdict_each():
    labeler = RecordingLabeler()
    claims = [Claim(Path("a.png"), "Is there a cat?"), Claim(Path("a.png"), "Is there a Cat?")]

    verdicts, stats = label_claims(labeler, claims)

    assert [q.prompt for call in labeler.calls for q in call] == [
        "Is there a cat? Please answer yes or no.",
        "Is there a Cat? Please answer yes or no.",
    ]
    assert stats.unique == 2 and [v.accepted for v in verdicts] == [True, False]


def test_it_keeps_an_images_questions_in_one_call():
    labeler = RecordingLabeler()
    claims = [Claim(Path(f"{i % 3}.png"), f"Is there a cat number {i}?") for i in range(9)]

    label_claims(labeler, claims, batch_size=4)

    assert [[q.image.name for q in call] for call in labeler.calls] == [
        ["0.png"] * 3,
        ["1.png"] * 3,
        ["2.png"] * 3,
    ]


def test_it_reports_nothing_saved_without_claims():
    verdicts, stats = label_claims(RecordingLabeler(), [])

    assert verdicts == []
    assert stats.share_saved == 0.0


def test_it_phrases_the_labeler_prompt_like_the_reference():
    assert labeler_prompt(" Is the sky   blue? ") == "Is the sky blue? Please answer yes or no."


@pytest.mark.slow
def test_it_labels_as_one_full_forward_per_claim_would(tiny_models_dir, tmp_path):
    astronaut, coffee = save_sample_images(tmp_path, ["astronaut", "coffee"])
    claims = [
        Claim(astronaut, "Is it true that the man is wearing a helmet?"),
        Claim(coffee, "Is there a cup of coffee?"),
        Claim(astronaut, "Is it true that the man is wearing a helmet?"),
        Claim(coffee, "Is the cup on a red table?"),
        Claim(coffee, "is there a cup of coffee?"),
    ]
    backend = TransformersBackend(tiny_models_dir / "tiny-llava", batch_size=2)

    verdicts, stats = label_claims(backend, claims)
    reference = backend.yes_no_plain([PolarQuery(c.image, labeler_prompt(c.question)) for c in claims])

    assert stats.unique == 4
    assert verdicts[0] == verdicts[2] and verdicts[1] != verdicts[4]
    for got, expected in zip(verdicts, reference, strict=True):
        assert got.p_yes == pytest.approx(expected.p_yes, abs=1e-5)
        assert got.p_no == pytest.approx(expected.p_no, abs=1e-5)


def test_the_coin_flip_control_labels_at_random_but_reproducibly(tmp_path):
    from labeling.backends import load_backend
    from labeling.backends.base import PolarQuery

    backend = load_backend("transformers", "coin-flip")
    queries = [PolarQuery(tmp_path / f"{n}.png", f"Is it true that there is a red circle {n}?") for n in range(400)]
    verdicts = backend.yes_no(queries)
    assert verdicts == backend.yes_no(queries)
    assert all(0 <= v.p_yes < 1 and abs(v.p_yes + v.p_no - 1) < 1e-12 for v in verdicts)
    assert 0.4 < sum(v.accepted for v in verdicts) / len(verdicts) < 0.6
    with pytest.raises(ValueError, match="only labels"):
        backend.generate([], None)
