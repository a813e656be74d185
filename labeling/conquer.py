"""Step 3, conquer: the labeler answers each claim's yes/no question about the image.

Answers to the same question about the same image often repeat across an instruction's ten candidates
("Is there a cat?"), so each distinct (image, question) is scored once and its verdict shared. Questions
match only when their text is exactly equal, so sharing saves work and never changes a verdict: "Is there a
CAT?" is asked on its own, as the reference, which asks every claim, would ask it.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from labeling.backends.base import Backend, PolarQuery, YesNo

LABELER_SUFFIX = "Please answer yes or no."


class ImageQuestion(Protocol):
    """Anything with an image path and a polar question, e.g. a claim from the divide step."""

    image: Path
    question: str


@dataclass(frozen=True)
class LabelStats:
    """How much work deduplication saved."""

    claims: int
    unique: int

    @property
    def share_saved(self) -> float:
        """Fraction of labeler queries avoided: 1 - unique / claims."""
        return 1 - self.unique / self.claims if self.claims else 0.0


def labeler_prompt(question: str) -> str:
    """The reference's labeler prompt: the question, then "Please answer yes or no."."""
    return f"{' '.join(question.split())} {LABELER_SUFFIX}"


def dedup_key(image, question: str) -> tuple[str, str]:
    """Claims share a verdict only when image and question are exactly the same."""
    return str(image), question


def label_claims(
    backend: Backend, claims: Sequence[ImageQuestion], batch_size: int = 512
) -> tuple[list[YesNo], LabelStats]:
    """One YesNo per claim, in order; each distinct (image, question) is scored once.

    Queries go to the backend image by image, about `batch_size` per call (an image's questions are never
    split across calls, so its prefix is computed once), mixing instructions and images freely.
    """
    unique: dict[tuple[str, str], PolarQuery] = {}
    for claim in claims:
        key = dedup_key(claim.image, claim.question)
        if key not in unique:
            unique[key] = PolarQuery(image=Path(claim.image), prompt=labeler_prompt(claim.question))
    verdicts: dict[tuple[str, str], YesNo] = {}
    for call in _calls_by_image(list(unique), batch_size):
        for key, verdict in zip(call, backend.yes_no([unique[key] for key in call]), strict=True):
            verdicts[key] = verdict
    results = [verdicts[dedup_key(claim.image, claim.question)] for claim in claims]
    return results, LabelStats(claims=len(claims), unique=len(unique))


def _calls_by_image(keys: list[tuple[str, str]], batch_size: int) -> list[list[tuple[str, str]]]:
    """Group keys by image (first appearance first) into calls of about batch_size, cut between images."""
    by_image: dict[str, list[tuple[str, str]]] = {}
    for key in keys:
        by_image.setdefault(key[0], []).append(key)
    calls: list[list[tuple[str, str]]] = []
    for image_keys in by_image.values():
        if calls and len(calls[-1]) + len(image_keys) <= batch_size:
            calls[-1] += image_keys
        else:
            calls.append(list(image_keys))
    return calls
