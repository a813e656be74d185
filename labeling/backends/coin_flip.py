"""A control labeler that knows nothing: each yes/no verdict is a coin flip.

Run an iteration with it (labeler `coin-flip`) beside one with a real labeler, and any fall in hallucination
that both show comes from something other than the feedback (the DPO step itself, the NLL term, chance).
Each (image, question) always gets the same flip, so a run is reproducible and duplicates agree.
"""

import hashlib
from collections.abc import Sequence
from pathlib import Path

from labeling.backends.base import GenerationRequest, PolarQuery, Sampling, YesNo

COIN_FLIP = "coin-flip"


class CoinFlipBackend:
    def __init__(self, seed: int = 0):
        self.seed = seed

    def yes_no(self, queries: Sequence[PolarQuery]) -> list[YesNo]:
        """p_yes uniform in [0, 1) from a hash of the image's file name and the prompt; p_no = 1 − p_yes."""
        verdicts = []
        for query in queries:
            key = f"{self.seed}\x00{Path(query.image).name}\x00{query.prompt}".encode()
            p_yes = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
            verdicts.append(YesNo(p_yes=p_yes, p_no=1.0 - p_yes))
        return verdicts

    def generate(self, requests: Sequence[GenerationRequest], sampling: Sampling) -> list[list[str]]:
        raise ValueError("the coin-flip control only labels; it cannot be a policy")

    def complete(self, prompts: Sequence[str], sampling: Sampling) -> list[str]:
        raise ValueError("the coin-flip control only labels; it cannot divide answers")
