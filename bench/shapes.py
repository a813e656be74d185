"""Does the loop cut hallucination, and is it the feedback? RLAIF-V in the shapes world, through the real app.

Usage:
    .venv/bin/python bench/shapes.py [--iterations 3] [--train 500] [--heldout 500]
                                     [--database-url postgres://…] [--broker-url redis://…]

The shapes world (labeling/shapes.py) knows the truth of every claim. This builds its trained tiny models
(`manage.py build_shapes_models`), draws the instruction sets (`load_shapes`), starts one Celery worker and runs
two arms of `--iterations` iterations each from the same base policy, every step through `run_iteration`:
- feedback: the trained labeler judges the claims, as RLAIF-V does;
- control: the same loop with the labeler's verdicts replaced by coin flips (labeler `coin-flip`).
An iteration is a draft on all training instructions (`create_iteration`), then `run_iteration --wait` (generate →
divide → label → combine, to the review gate), then `run_iteration --approve --wait` (DPO on its pairs, then the
evaluate stage on the held-out images, scored against their true objects). The next iteration of an arm starts
from that arm's last checkpoint. The base policy is scored once by the same library call the evaluate stage makes.

The iterations run with `training.shapes_models.ITERATION_CONFIG`: the paper's RLAIF-V settings (n = 10 at
temperature 0.7, score −(rejected claims), at most 2 pairs per instruction, length balancing, DPO β 0.1) except
what tiny models trained from scratch need, with the reasons written there (learning rate, batch, epochs, an
NLL term on the chosen answers). The control arm has the same settings, so whatever the NLL term or DPO gives by
itself shows up there too. The held-out evaluation samples at temperature 0.7 (one answer per image).

Prints, per iteration, the ground-truth rates (CHAIRs, CHAIRi), recall, the labeler's accuracy against the
truth on the iteration's claims, the pairs (and how many prefer the answer with fewer wrong objects) and the
minutes; last `hallucination_reduction` (1 − CHAIRs after the last feedback iteration / CHAIRs of the base
policy), `recall_kept` (recall after / before) and `control_reduction` (the same for the control arm).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The checkout's root is on the path first, so these import the project's modules.
from bench.shapes_app import ShapesApp, header, report_row, row  # noqa: E402
from training.shapes_models import ITERATION_CONFIG as CONFIG  # noqa: E402
from training.shapes_models import LABELER  # noqa: E402
from training.shapes_models import POLICY as BASE_POLICY  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--train", type=int, default=500, help="training images (one instruction each)")
    parser.add_argument("--heldout", type=int, default=500, help="held-out images the evaluation scores")
    parser.add_argument("--seed", type=int, default=0, help="the world's seed")
    parser.add_argument("--database-url")
    parser.add_argument("--broker-url")
    args = parser.parse_args()
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="bench-shapes-") as tmp:
        app = ShapesApp(tmp, args.database_url, args.broker_url)
        build_minutes = app.set_up(args.train, args.heldout, args.seed)
        with app.worker():
            base = app.base_scores(CONFIG | {"policy": BASE_POLICY, "labeler": LABELER})
            print(f"\n{header()}")
            print(row("base policy", base), flush=True)
            finals = {}
            for arm, labeler in (("feedback", LABELER), ("control", "coin-flip")):
                policy = BASE_POLICY
                for step in range(1, args.iterations + 1):
                    number = app.create(policy, labeler, CONFIG, 0, None)
                    report = app.train_and_report(number)
                    print(report_row(f"{arm} {step} (it {number})", report), flush=True)
                    policy, finals[arm] = report["checkpoint"], report["metrics"]["eval"]["details"]["truth"]

    reduction = 1 - finals["feedback"]["chair_s"] / base["chair_s"]
    control = 1 - finals["control"]["chair_s"] / base["chair_s"]
    print(f"\nworld: {args.train} training images, {args.heldout} held-out; {app.services}; models built in "
          f"{build_minutes:.1f} min; whole bench {(time.monotonic() - started) / 60:.1f} min")  # fmt: skip
    print(f"base labeler accuracy on held-out claims: {base['labeler_accuracy']:.3f}")
    print(f"hallucination_reduction: {reduction:.3f}")
    print(f"recall_kept: {finals['feedback']['recall'] / base['recall']:.3f}")
    print(f"control_reduction: {control:.3f}")


if __name__ == "__main__":
    main()
