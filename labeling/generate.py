"""Step 1, generate: the policy answers each instruction n times, each answer with a recorded seed.

The reference samples from an unseeded RNG, so its runs cannot be repeated; here every answer has a seed, and
the backend guarantees a seed gives the same text whatever else shares its batch. Re-running a stage therefore
regenerates exactly the missing candidates.

Seeds are drawn per instruction (`PER_INSTRUCTION`): candidate k of an instruction gets a seed derived from the
run's seed, the instruction's content (its image's sha256 and its question: a re-import draws the same) and k.
With one seed `base + k` for candidate k of every instruction (`SHARED`, how runs before per-instruction seeds
were drawn, kept to reproduce them), every picture of a run shares one random stream: an evaluation over 500
pictures is then one draw, not 500, and its figures swing several times more than their binomial error says.
"""

import hashlib
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
    key: str = ""  # what the instruction is (`instruction_key`); computed from the image file when empty

    def identity(self) -> str:
        return self.key or instruction_key(hashlib.sha256(Path(self.image).read_bytes()).hexdigest(), self.question)


@dataclass(frozen=True)
class Candidate:
    """One sampled answer; `seed` reproduces it."""

    instruction_id: int | str
    seed: int
    text: str


PER_INSTRUCTION = "per_instruction"
SHARED = "shared"
SEEDINGS = (PER_INSTRUCTION, SHARED)
SEED_BITS = 31  # every engine takes it: torch, vLLM and OpenAI-compatible servers (some read a 32-bit int)


def instruction_key(image_sha256: str, question: str) -> str:
    """An instruction's identity for drawing its seeds: its content, never a database id."""
    return f"{image_sha256}\n{question}"


def _derived_seed(base_seed: int, key: str, k: int) -> int:
    digest = hashlib.sha256(f"{base_seed}\n{k}\n{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - SEED_BITS)


def candidate_seeds(n: int, base_seed: int = 0, key: str = "", seeding: str = PER_INSTRUCTION) -> tuple[int, ...]:
    """The seeds of one instruction's candidates 0..n-1: the same arguments always give the same seeds.

    Per instruction, seed k is a hash of (base_seed, k, key), distinct within the instruction (a collision,
    about one in 2^31, draws the next k); shared, it is base_seed + k whatever the instruction.
    """
    if seeding == SHARED:
        return tuple(base_seed + k for k in range(n))
    if seeding != PER_INSTRUCTION:
        raise ValueError(f"unknown seeding {seeding!r}; expected one of {', '.join(SEEDINGS)}")
    seeds, k = [], 0
    while len(seeds) < n:
        seed = _derived_seed(base_seed, key, k)
        if seed not in seeds:
            seeds.append(seed)
        k += 1
    return tuple(seeds)


def generate_candidates(
    backend: Backend,
    instructions: Sequence[Instruction],
    n: int = 10,
    sampling: Sampling = PAPER_SAMPLING,
    base_seed: int = 0,
    seeding: str = PER_INSTRUCTION,
) -> list[Candidate]:
    """n candidates per instruction, grouped by instruction in input order, then by candidate k."""
    seeds = [candidate_seeds(n, base_seed, i.identity() if seeding == PER_INSTRUCTION else "", seeding)
             for i in instructions]  # fmt: skip
    requests = [
        GenerationRequest(image=Path(i.image), question=i.question, seeds=s)
        for i, s in zip(instructions, seeds, strict=True)
    ]
    texts = backend.generate(requests, sampling)
    return [
        Candidate(instruction_id=instruction.id, seed=seed, text=text)
        for instruction, own, answers in zip(instructions, seeds, texts, strict=True)
        for seed, text in zip(own, answers, strict=True)
    ]
