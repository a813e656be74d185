"""Does the loop cut hallucination, is it the feedback, and does the policy game the score? RLAIF-V in the shapes
world, through the real app, replicated, with 95 % intervals.

Usage:
    .venv/bin/python bench/shapes.py [--replicates 3] [--iterations 3] [--arms paper,best_chosen,control]
                                     [--train 500] [--heldout 500] [--split heldout|validation]
                                     [--set KEY=JSON …] [--database-url …] [--broker-url …]

The shapes world (labeling/shapes.py) knows the truth of every claim. This builds its trained tiny models, draws
the instruction sets (`load_shapes`), starts one Celery worker and runs, in each replicate, the `--arms` (of these
four) for `--iterations` iterations each from the same base policy, every step through `run_iteration`:
- paper: the trained labeler judges the claims and an answer scores −(rejected claims), as RLAIF-V does;
- reject_repeats: the same, but a claim repeating an earlier claim of its answer counts as rejected
  (config `reject_repeats`, off by default);
- best_chosen: reject_repeats, and only pairs whose chosen answer has its instruction's best score (config
  `chosen_is_best`, off by default);
- control: the paper's loop with the labeler's verdicts replaced by coin flips (labeler `coin-flip`).
Replicate r runs with config seed r: its own candidate draws, pair draws and DPO seed; every answer has a seed of
its own (labeling.generate), so a replicate's evaluation is 500 draws, not one. The base policy is the first
iteration's baseline (the evaluate code on the starting policy); every figure is scored by this script against
the pictures' true objects from the answers the evaluations wrote.

Figures, each as mean [95 % interval] by bootstrap over pictures and replicates (bench/intervals.py), on the
test split (`--split heldout`, the default; `--split validation` is where settings are chosen):
- reduction: 1 − count-aware CHAIRs after the last iteration / the base policy's (a mention past an object's true
  count is a hallucination: repeats are not free); the set-based reduction beside it;
- recall_kept: true objects named after / before; repetition_delta: the share of answers repeating a claim after −
  before; and the paired differences between arms with the smallest difference the design detects.
Last, as `name: value` lines, the `--headline` arm's (default best_chosen) figures and the control's. Every arm runs
with CONFIG below (the shapes models' iteration settings, n chosen on validation); `--set` changes a setting for
every arm, to choose settings on `--split validation` (the control may be left out there).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The checkout's root is on the path first, so these import the project's modules.
from bench.intervals import bootstrap, delta, ratio  # noqa: E402
from bench.shapes_app import ShapesApp, header, report_row, row  # noqa: E402
from training.shapes_models import ITERATION_CONFIG, LABELER  # noqa: E402
from training.shapes_models import POLICY as BASE_POLICY  # noqa: E402

# Chosen on the validation split, never the test split (best_chosen, 2 replicates × 3 iterations, count-aware
# reduction): n 10 (the demo's) 0.250 [0.193, 0.306]; n 16 0.353 [0.293, 0.414]; learning rate 1e-4 rose again at
# the third iteration; no NLL term (sft_weight 0) raised repetition at once. More candidates give more instructions
# a clean best answer to pair with.
#   .venv/bin/python bench/shapes.py --split validation --arms best_chosen --replicates 2 --set n=16
CONFIG = ITERATION_CONFIG | {"n": 16}

ARMS = {
    "paper": (LABELER, {}),
    "reject_repeats": (LABELER, {"reject_repeats": True}),
    "best_chosen": (LABELER, {"reject_repeats": True, "chosen_is_best": True}),
    "control": ("coin-flip", {}),
}
FIELDS = ("count_hallucinated", "hallucinated", "names_objects", "recalled", "repeats", "words")


def rate_reduction(arm: str, flag: str = "count_hallucinated"):
    """1 − (the arm's rate) / (the base's): each rate is answers hallucinating ÷ answers naming an object."""

    def figure(a):
        after = a[f"{arm}_{flag}"].sum() / a[f"{arm}_names_objects"].sum()
        return 1 - after / (a[f"base_{flag}"].sum() / a["base_names_objects"].sum())

    return figure


def arrays_of(pictures: dict[str, list[list[dict]]]) -> dict[str, np.ndarray]:
    """(who → per replicate, per picture) rows as named (replicates × pictures) arrays, e.g. paper_recalled."""
    return {
        f"{who}_{field}": np.array([[float(p[field]) for p in replicate] for replicate in rows])
        for who, rows in pictures.items()
        for field in FIELDS
    }


def settings_of(item: str, parser: argparse.ArgumentParser) -> tuple[str, object]:
    """`key=value` with a JSON value (a bare word is a string)."""
    key, _, value = item.partition("=")
    if not key or not value:
        parser.error(f"--set {item!r}: give KEY=VALUE, e.g. sft_weight=0")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=3, help="runs of every arm, config seed 0, 1, …")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--train", type=int, default=500, help="training images (one instruction each)")
    parser.add_argument("--heldout", type=int, default=500, help="pictures of the evaluated split")
    parser.add_argument("--split", choices=("heldout", "validation"), default="heldout")
    parser.add_argument("--arms", default="paper,best_chosen,control", help="the arms to run, comma-separated")
    parser.add_argument("--headline", choices=tuple(a for a in ARMS if a != "control"), default="best_chosen")
    parser.add_argument("--seed", type=int, default=0, help="the world's seed")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a config value every arm runs with, e.g. sft_weight=0 (choose settings on validation)",
    )
    parser.add_argument("--database-url")
    parser.add_argument("--broker-url")
    args = parser.parse_args()
    arms = {arm: ARMS[arm] for arm in args.arms.split(",")}
    overrides = dict(settings_of(item, parser) for item in args.set)
    if args.headline not in arms or ("control" not in arms and args.split == "heldout"):
        parser.error("--arms must hold the --headline arm, and on the test split the control")
    started = time.monotonic()
    validation, heldout = (args.heldout, 0) if args.split == "validation" else (0, args.heldout)

    pictures: dict[str, list[list[dict]]] = {"base": [], **{arm: [] for arm in arms}}
    with tempfile.TemporaryDirectory(prefix="bench-shapes-") as tmp:
        app = ShapesApp(tmp, args.database_url, args.broker_url)
        build_minutes = app.set_up(args.train, heldout, args.seed, validation)
        with app.worker():
            print(f"\n{header()}")
            for replicate in range(args.replicates):
                for arm, (labeler, extra) in arms.items():
                    policy = BASE_POLICY
                    config = CONFIG | overrides | extra | {"seed": replicate, "eval_split": args.split}
                    for step in range(1, args.iterations + 1):
                        number = app.create(policy, labeler, config, 0, None)
                        report = app.train_and_report(number)
                        if step == 1 and len(pictures["base"]) == replicate:  # the base, once a replicate
                            print(row(f"base policy (seed {replicate})", report["metrics"]["baseline"]["details"]
                                      ["truth"]), flush=True)  # fmt: skip
                            pictures["base"].append(app.answers(number, "baseline"))
                        print(report_row(f"{arm} {step}, seed {replicate} (it {number})", report), flush=True)
                        policy = report["checkpoint"]
                    pictures[arm].append(app.answers(number, "eval"))

    figures = {}
    for arm in arms:
        figures |= {
            f"{arm}_reduction": rate_reduction(arm),
            f"{arm}_set_reduction": rate_reduction(arm, "hallucinated"),
            f"{arm}_recall_kept": ratio("base_recalled", f"{arm}_recalled"),
            f"{arm}_repetition_delta": delta("base_repeats", f"{arm}_repeats"),
            f"{arm}_words_ratio": ratio("base_words", f"{arm}_words"),
        }
    pairs = [(arm, "paper") for arm in arms if arm not in ("paper", "control") and "paper" in arms]
    pairs += [(arm, "control") for arm in arms if arm != "control" and "control" in arms]
    for a, b in pairs:
        figures[f"{a}_minus_{b}"] = lambda x, a=a, b=b: figures[f"{a}_reduction"](x) - figures[f"{b}_reduction"](x)
    estimates = bootstrap(arrays_of(pictures), figures)
    base = arrays_of(pictures)

    minutes = (time.monotonic() - started) / 60
    print(f"\nworld: {args.train} training images, {args.heldout} {args.split} pictures; {args.replicates} replicates "
          f"× {args.iterations} iterations per arm; settings {CONFIG | overrides}; {app.services}; "
          f"models built in {build_minutes:.1f} min; whole bench {minutes:.1f} min")  # fmt: skip
    rate = base["base_count_hallucinated"].sum() / base["base_names_objects"].sum()
    print(f"base policy: count-aware CHAIRs {rate:.3f}, answers repeating a claim {base['base_repeats'].mean():.3f}")
    print("\nper arm, mean [95 % interval] over pictures and replicates:")
    for arm in arms:
        print(f"{arm:<15} reduction {estimates[f'{arm}_reduction']}  set-based {estimates[f'{arm}_set_reduction']}  "
              f"recall_kept {estimates[f'{arm}_recall_kept']}  repetition_delta {estimates[f'{arm}_repetition_delta']}"
              f"  words_ratio {estimates[f'{arm}_words_ratio']}")  # fmt: skip
    print("\npaired differences in reduction (smallest difference detectable at 80 % power):")
    for a, b in pairs:
        difference = estimates[f"{a}_minus_{b}"]
        print(f"{a} − {b}: {difference} (detectable: {difference.detectable:.3f}; a difference of 0.05 needs about "
              f"{max(1, round(args.replicates * (difference.detectable / 0.05) ** 2))} replicates)")  # fmt: skip

    headline = args.headline
    print(f"\nheadline arm: {headline}")
    print(f"hallucination_reduction: {estimates[f'{headline}_reduction'].mean:.3f}")
    print(f"hallucination_reduction_ci_low: {estimates[f'{headline}_reduction'].low:.3f}")
    if "control" in arms:
        print(f"control_reduction: {estimates['control_reduction'].mean:.3f}")
        print(f"control_reduction_ci_high: {estimates['control_reduction'].high:.3f}")
    print(f"recall_kept: {estimates[f'{headline}_recall_kept'].mean:.3f}")
    print(f"repetition_delta: {estimates[f'{headline}_repetition_delta'].mean:.3f}")


if __name__ == "__main__":
    main()
