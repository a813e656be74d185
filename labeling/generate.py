"""Step 1, generate: the policy answers each instruction n times, each answer with a recorded seed.

The reference samples from an unseeded RNG, so its runs cannot be repeated; here candidate k of every
instruction uses seed `base_seed + k`, and the backend guarantees a seed gives the same text whatever else
shares its batch. Re-running a stage therefore regenerates exactly the missing candidates.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labeling.backends.base import Backend, GenerationRequest, Sampling

PAPER_SAMPLING = Sampling()  # temperature 0.7, default top-p, 512 new tokens


@dataclass(frozen=True)
class Instruction:
    """An image and a question about it (a description request or a VQA question)."""

    id: int | str
    image: Path
    question: str


@dataclass(frozen=True)
class Candidate:
    """One sampled answer; `seed` reproduces it."""

    instruction_id: int | str
    seed: int
    text: str


def candidate_seeds(n: int, base_seed: int = 0) -> tuple[int, ...]:
    """The seeds of candidates 0..n-1: the same n and base_seed always give the same seeds."""
    return tuple(base_seed + k for k in range(n))


def generate_candidates(
    backend: Backend,
    instructions: Sequence[Instruction],
    n: int = 10,
    sampling: Sampling = PAPER_SAMPLING,
    base_seed: int = 0,
) -> list[Candidate]:
    """n candidates per instruction, grouped by instruction in input order, then by seed."""
    seeds = candidate_seeds(n, base_seed)
    requests = [GenerationRequest(image=Path(i.image), question=i.question, seeds=seeds) for i in instructions]
    texts = backend.generate(requests, sampling)
    return [
        Candidate(instruction_id=instruction.id, seed=seed, text=text)
        for instruction, answers in zip(instructions, texts, strict=True)
        for seed, text in zip(seeds, answers, strict=True)
    ]
