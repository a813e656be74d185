"""What an iteration asks for: its config over the defaults, its labeling strategy and its splitter.

`Iteration.config` holds only what differs from the defaults, so every reader goes through `config()`.
"""

from dataclasses import dataclass

from django.conf import settings

from labeling.backends.base import Sampling
from labeling.engine_options import check_options, gpus_needed
from webapp.models import Iteration, JobKind

DEFAULT_CONFIG = {
    "n": 10,
    "temperature": 0.7,
    "top_p": 1.0,
    "max_new_tokens": 512,
    "seed": 0,
    # Each instruction's answers drawn from seeds of its own (labeling.generate); iterations made before this
    # default keep "shared" (migration 0020), the seeds they were drawn with.
    "seeding": "per_instruction",
    # What the evaluate stage (and the baseline) answers: "heldout", the test split the dashboard reports, or
    # "validation", where a run that chooses settings measures them (the test split is never tuned on).
    "eval_split": "heldout",
    "pairs_per_instruction": 2,
    "length_balance": True,
    # Off: the paper's score, −(rejected claims). On: a claim repeating an earlier claim of its answer counts as
    # rejected too, so a repeat never buys a better score than saying less (the shapes world's policy learnt to
    # fill an absent object's place with a repeat: README, "Evidence").
    "reject_repeats": False,
    # Off: any two answers of an instruction with different scores may pair (the paper). On: only pairs whose chosen
    # answer has the instruction's best score, so no pair teaches that an answer with a fault is right.
    "chosen_is_best": False,
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

# The config keys that name a model (the candidates' generator, the second labeler, self-reward's reference) and
# those that name data files (COCO's ground truth: the instances and captions JSON, the images' folder).
MODEL_KEYS = ("generator", "second_labeler", "reference")
# Each COCO key takes one path or a list (the reference reads train and val 2014 together).
COCO_KEYS = ("coco_instances", "coco_captions", "coco_images")
# AMBER's data folder and images, MMHal-Bench's folder (webapp/jobs/benchmarks.py).
BENCHMARK_KEYS = ("amber_data", "amber_images", "mmhal_data")
DATA_KEYS = (*COCO_KEYS, *BENCHMARK_KEYS)
# Object HalBench's answers are decoded as the reference decodes them, by 3-beam search; other evaluations greedily.
OBJECT_HALBENCH_BEAMS = 3

# The models an iteration loads, each with engine options of its own (config "engine_options": {role: {...}}):
# the policy (generate, train, and its checkpoint in evaluate), the labeler (label, evaluate; a second labeler
# too) and the splitter (the divide LLM).
ROLES = ("policy", "labeler", "splitter")


def config(iteration: Iteration) -> dict:
    """The iteration's settings over the defaults."""
    merged = DEFAULT_CONFIG | (iteration.config or {})
    merged["chunk_size"] = merged["chunk_size"] or settings.CHUNK_SIZE
    return merged


def eval_sampling(cfg: dict) -> Sampling:
    """How the evaluation decodes its answers: greedy (or `eval_temperature`), with `eval_num_beams` beams; the
    beams default to Object HalBench's 3 when the config names COCO ground truth, else 1."""
    beams = cfg.get("eval_num_beams") or (OBJECT_HALBENCH_BEAMS if cfg.get("coco_instances") else 1)
    return Sampling(
        temperature=cfg.get("eval_temperature", 0.0),
        max_new_tokens=cfg.get("eval_max_new_tokens", cfg["max_new_tokens"]),
        num_beams=beams,
    )


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


def check_engine_options(engine: str, value) -> dict:
    """The config's "engine_options" ({role: options}) checked for `engine`; a ValueError names the problem."""
    if not isinstance(value, dict):
        raise ValueError('engine_options must be a JSON object by role, e.g. {"labeler": {"tensor_parallel_size": 4}}')
    checked = {}
    for role, options in value.items():
        if role not in ROLES:
            raise ValueError(f"engine_options has no role {role!r} (roles: {', '.join(ROLES)})")
        try:
            checked[role] = check_options(engine, options)
        except ValueError as error:
            raise ValueError(f"engine_options[{role}]: {error}") from None
    return checked


def engine_options(iteration: Iteration, role: str, engine: str | None = None) -> dict:
    """A role's engine options: the worker's defaults for the engine (settings.ENGINE_OPTIONS), then the
    iteration's own. `engine` is the one the model runs on when it is not the iteration's (evaluate on openai)."""
    engine = engine or iteration.engine
    own = ((iteration.config or {}).get("engine_options") or {}).get(role) or {}
    return check_options(engine, settings.ENGINE_OPTIONS.get(engine, {}) | (own if engine == iteration.engine else {}))


def models_of(iteration: Iteration, kind: str) -> list[tuple[str, str]]:
    """The (role, model) pairs a job of `kind` loads, in the order it uses them (none: a CPU job)."""
    policy = [("policy", iteration.policy)]
    divider = [("splitter", splitter(iteration).model)] if splitter(iteration).model else []
    if strategy(iteration) == "self_reward" and kind in (JobKind.DIVIDE, JobKind.LABEL):
        return policy if kind == JobKind.LABEL else []  # the policy and its reference score; nothing divides
    if strategy(iteration) == "whole_response" and kind == JobKind.DIVIDE:
        return []  # each answer is its own claim: nothing divides
    return {
        JobKind.GENERATE: [("policy", generator(iteration))],
        JobKind.DIVIDE: divider,
        JobKind.LABEL: [("labeler", name) for name in labelers(iteration)],
        JobKind.TRAIN: policy,
        JobKind.EVALUATE: [
            ("policy", iteration.checkpoint or iteration.policy),
            *divider,
            ("labeler", iteration.labeler),
        ],
        JobKind.BASELINE: [("policy", iteration.policy), *divider, ("labeler", iteration.labeler)],
    }.get(kind, [])


def gpus_for(iteration: Iteration, kind: str) -> int:
    """The GPUs a job of `kind` needs: the most any of its models is spread over (0: it loads none). Model work
    stays on GPU workers even when a server runs the model (openai): they hold the API tokens (models.env)."""
    roles = [role for role, _ in models_of(iteration, kind)]
    return max((max(gpus_needed(iteration.engine, engine_options(iteration, role)), 1) for role in roles), default=0)


def engine_settings(iteration: Iteration) -> list[tuple[str, str, dict | str]]:
    """For the iteration page: each role's model and its engine options, or what is wrong with them."""
    models = {"policy": iteration.policy, "labeler": iteration.labeler, "splitter": splitter(iteration).model}
    rows = []
    for role in ROLES:
        if models[role]:
            try:
                rows.append((role, models[role], dict(sorted(engine_options(iteration, role).items()))))
            except ValueError as error:
                rows.append((role, models[role], str(error)))
    return rows
