"""What an iteration asks for: its config over the defaults, its labeling strategy and its splitter.

`Iteration.config` holds only what differs from the defaults, so every reader goes through `config()`.
"""

from dataclasses import dataclass

from django.conf import settings

from webapp.models import Iteration

DEFAULT_CONFIG = {
    "n": 10,
    "temperature": 0.7,
    "top_p": 1.0,
    "max_new_tokens": 512,
    "seed": 0,
    "pairs_per_instruction": 2,
    "length_balance": True,
    "chunk_size": None,  # None: settings.CHUNK_SIZE
    "generate_batch": 8,
    "label_batch": 512,
    # DPO: the reference trains the projector and the language model and runs the vision tower frozen
    # (training.dpo.DPOSettings; its other fields are config keys too, at the paper's defaults)
    "train_vision_tower": False,
}

# How an iteration turns answers into pairs: `rlaifv` (divide and conquer with a labeler), `whole_response`
# (the labeler judges each whole answer with one question; the paper's baseline to divide and conquer) or
# `self_reward` (the policy's own implicit reward ranks its answers; the paper's ablation).
STRATEGIES = ("rlaifv", "whole_response", "self_reward")

RULE_SPLITTER = "rule"


def config(iteration: Iteration) -> dict:
    """The iteration's settings over the defaults."""
    merged = DEFAULT_CONFIG | (iteration.config or {})
    merged["chunk_size"] = merged["chunk_size"] or settings.CHUNK_SIZE
    return merged


def second_labeler(iteration: Iteration) -> str | None:
    """The optional second labeler (config "second_labeler"): it judges every claim too, and the claims on which
    the two labelers disagree go first in the spot-check queue. Scores and pairs follow the first alone."""
    name = (iteration.config or {}).get("second_labeler") or None
    return None if name == iteration.labeler else name


def labelers(iteration: Iteration) -> list[str]:
    """The labelers the label stage runs: the iteration's, then the second one if it has one."""
    return [iteration.labeler, *filter(None, [second_labeler(iteration)])]


def strategy(iteration: Iteration) -> str:
    name = (iteration.config or {}).get("strategy", "rlaifv")
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    return name


@dataclass(frozen=True)
class Splitter:
    """How an iteration divides answers into claims: `Iteration.splitter` is "rule" or the divide LLM's path.

    `method` is what `labeling.divide` runs ("rule" or the "rlaifv" prompts), `model` the LLM it needs (None
    for the rule splitter, which runs on a CPU worker), `label` what each claim records as its origin.
    """

    method: str
    model: str | None

    @property
    def label(self) -> str:
        return self.method if self.model is None else f"{self.method}:{self.model}"


def generator(iteration: Iteration) -> str:
    """The model whose answers are the candidates: config["generator"], else the policy itself.

    RLAIF-V samples the policy being trained (the paper's "deconfounded" candidates); another model's answers
    are its ablation. The train stage always trains the policy.
    """
    return (iteration.config or {}).get("generator") or iteration.policy


def splitter(iteration: Iteration) -> Splitter:
    if iteration.splitter == RULE_SPLITTER:
        return Splitter(RULE_SPLITTER, None)
    return Splitter("rlaifv", iteration.splitter)
