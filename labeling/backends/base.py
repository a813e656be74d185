"""The one small interface every model engine implements.

The pipeline stages talk to models only through these three calls, so the same code runs on
transformers (CPU or GPU), an offline vLLM engine, or an OpenAI-compatible server.
Images travel as file paths: each engine decides how to load, cache or encode them.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; defaults are the paper's policy settings (temperature 0.7, 512 new tokens).

    `num_beams` > 1 decodes by beam search instead (Object HalBench's answers, as the reference decodes them:
    3 beams); it ignores temperature and seeds, so every seed of a request gets the same text.
    """

    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 512
    num_beams: int = 1


@dataclass(frozen=True)
class GenerationRequest:
    """Answer one image + question once per seed; the same seed must give the same text."""

    image: Path
    question: str
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class PolarQuery:
    """A yes/no question about an image, already phrased for the labeler."""

    image: Path
    prompt: str


@dataclass(frozen=True)
class YesNo:
    """Probability mass of the labeler's first token on Yes/yes and on No/no (softmax over the full vocab)."""

    p_yes: float
    p_no: float

    @property
    def accepted(self) -> bool:
        """RLAIF-V's rule: a claim stands iff P(yes) > P(no); no threshold, other tokens ignored."""
        return self.p_yes > self.p_no


class Backend(Protocol):
    def generate(self, requests: Sequence[GenerationRequest], sampling: Sampling) -> list[list[str]]:
        """One list of texts per request, in the order of its seeds."""
        ...

    def yes_no(self, queries: Sequence[PolarQuery]) -> list[YesNo]:
        """One YesNo per query, in order."""
        ...

    def complete(self, prompts: Sequence[str], sampling: Sampling) -> list[str]:
        """Text-only completion (the divide step's LLM); one text per prompt."""
        ...
