"""Where the loop starts: the starting policy evaluated as the iteration's checkpoint will be (on the test split
unless the iteration says otherwise), an iteration's metrics["baseline"].

Every trend chart starts there (the "start" point) and the change from the start is measured from it. The
baseline job (`JobKind.BASELINE`) measures it beside the generate stage, so the review gate of the first
iteration already shows it. When an earlier evaluation of the same policy measured the same way exists (the
evaluation of the iteration whose checkpoint the policy is, or another iteration's baseline of it) it is copied
at launch instead: a policy is evaluated once per way of measuring it.

"The same way" (`measurement`) is a digest of what decides the figures besides the policy: the labeler, the
splitter, the evaluation's sampling and seeds, and the evaluated split's instructions (their content).
"""

import hashlib
import json

from django.db.models import Q

from webapp.iterations.config import config, eval_sampling
from webapp.models import Instruction, Iteration, Split


def evaluation_split(iteration: Iteration) -> list[Instruction]:
    """The instructions an evaluation answers, in a fixed order: the held-out (test) split, or the validation split
    where a run chooses its settings (config "eval_split"); its first "eval_limit" when set.

    Only those of the sources the iteration trains on (every source when none of them has any): a user importing
    other instructions, held-out ones too, does not change the test split an iteration reports on (it did: 301
    held-out pictures instead of the shapes world's 300)."""
    cfg = config(iteration)
    split, limit = cfg["eval_split"], cfg.get("eval_limit")
    if split not in (Split.HELDOUT, Split.VALIDATION):
        raise ValueError(f"eval_split must be '{Split.HELDOUT}' or '{Split.VALIDATION}', not {split!r}")
    instructions = Instruction.objects.filter(split=split)
    sources = iteration.instructions.values("source").distinct() if iteration.pk else []
    own = instructions.filter(source__in=sources)
    if own.exists():
        instructions = own
    instructions = instructions.order_by("pk")
    return list(instructions[:limit] if limit else instructions)


def measurement(iteration: Iteration) -> str:
    cfg = config(iteration)
    heldout = [(i.image_sha256, i.question) for i in evaluation_split(iteration)]
    what = {
        "split": cfg["eval_split"],
        "labeler": iteration.labeler,
        "splitter": iteration.splitter,
        "temperature": cfg.get("eval_temperature", 0.0),
        "max_new_tokens": cfg.get("eval_max_new_tokens", cfg["max_new_tokens"]),
        "seed": cfg["seed"],
        "seeding": cfg["seeding"],
        "test_split": hashlib.sha256(json.dumps(heldout).encode()).hexdigest(),
    }
    if eval_sampling(cfg).num_beams > 1:  # only then, so greedy evaluations keep the measurements they had
        what["num_beams"] = eval_sampling(cfg).num_beams
    if cfg.get("chair_extractor"):
        what["chair_extractor"] = cfg["chair_extractor"]
    # The benchmarks' files and judge, where named (webapp/jobs/benchmarks.py): other files, other figures.
    what |= {key: cfg[key] for key in ("amber_data", "amber_queries", "mmhal_data", "mmhal_judge") if cfg.get(key)}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def cached(iteration: Iteration) -> dict | None:
    """An earlier evaluation of the iteration's policy measured the same way, newest first; None if there is none."""
    wanted = measurement(iteration)
    earlier = Iteration.objects.exclude(pk=iteration.pk).filter(
        Q(checkpoint=iteration.policy) | Q(policy=iteration.policy)
    )
    for other in earlier.order_by("-number"):
        metrics = other.metrics or {}
        found = metrics.get("eval") if other.checkpoint == iteration.policy else metrics.get("baseline")
        if found and (found.get("details") or {}).get("measurement") == wanted:
            details = found["details"] | {"copied_from": other.number}
            return found | {"details": details}
    return None


def needs_job(iteration: Iteration) -> bool:
    """At launch: whether the baseline job must measure the policy. A cached evaluation is copied into the
    iteration's metrics instead; an iteration that has its baseline (resumed), or a test split with no
    instructions, needs none. Call in the launch's transaction."""
    split = config(iteration)["eval_split"]
    if "baseline" in (iteration.metrics or {}) or not Instruction.objects.filter(split=split).exists():
        return False
    found = cached(iteration)
    if found is None:
        return True
    locked = Iteration.objects.select_for_update().get(pk=iteration.pk)
    Iteration.objects.filter(pk=iteration.pk).update(metrics=(locked.metrics or {}) | {"baseline": found})
    return False


def start_of(iterations: list[Iteration]) -> dict | None:
    """The loop's starting point for a chain of iterations (oldest first): the first one's baseline."""
    for iteration in iterations:
        if baseline := (iteration.metrics or {}).get("baseline"):
            return baseline
    return None


def chain(iteration: Iteration) -> list[Iteration]:
    """The iterations that led to this one, oldest first: each trained the checkpoint the next started from."""
    found = [iteration]
    while (previous := Iteration.objects.filter(checkpoint=found[0].policy).order_by("-number").first()) and (
        previous not in found
    ):
        found.insert(0, previous)
    return found


def start_for(iteration: Iteration) -> dict | None:
    """The base policy's evaluation for an iteration: the baseline of the first iteration of its chain that has one."""
    return start_of(chain(iteration))
