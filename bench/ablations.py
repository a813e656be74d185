"""The RLAIF-V paper's three ablations in miniature, in the shapes world, through the real app.

Usage:
    .venv/bin/python bench/ablations.py [--train 300] [--heldout 500] [--rounds 3] [--steps 24]
                                        [--database-url postgres://…] [--broker-url redis://…]

Every arm starts from the same base policy (`shapes-policy`), uses the same labeler (`shapes-labeler`) and the
same settings (`training.shapes_models.ITERATION_CONFIG`), and spends the same budget: the same `--train`
training instructions (each answered n = 10 times) and `--steps` DPO optimizer steps (`max_steps`) in all. Each
arm's last checkpoint is scored by the evaluate stage on the same held-out pictures with the same sampling
seeds, against their true objects.

(a) divide and conquer vs whole-response scoring: one iteration on all the instructions, the labeler judging
    each claim (`rlaifv`) or each whole answer with one question (`whole_response`, "Is it true that
    <answer>?").
(b) iterative vs one round: `--rounds` iterations on disjoint slices of the instructions, each generating with
    the newest policy and training `--steps / --rounds` steps, vs one iteration on all of them training
    `--steps` steps (the `rlaifv` arm of (a): the same run).
(c) own answers vs another model's: the iterative arm of (b) (each round's candidates are its policy's own
    answers, the paper's "deconfounded" candidates) vs the same rounds with the base policy answering for the
    later-round policies (config `generator`; round 1 is the same run in both arms, as there the base policy is
    the policy).
So seven iterations run: one_round, whole_response, own rounds 1..R, other rounds 2..R.

Prints every iteration (truth rates, recall, the labeler's accuracy on the claims it judged, for
whole_response on whole answers, the pairs and how many prefer the answer with fewer wrong objects), then each
arm's `hallucination_reduction` (1 − CHAIRs of its last checkpoint / CHAIRs of the base policy) and
`recall_kept` (recall after / before).
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

# Each ablation: its name and its two arms, each arm named by the run whose last checkpoint it scores.
ABLATIONS = (
    ("(a) feedback", ("divide_and_conquer", "one_round"), ("whole_response", "whole_response")),
    ("(b) alignment", ("iterative", "own"), ("one_round", "one_round")),
    ("(c) candidates", ("own_answers", "own"), ("other_answers", "other")),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=300, help="training instructions each arm spends")
    parser.add_argument("--heldout", type=int, default=500, help="held-out images the evaluation scores")
    parser.add_argument("--rounds", type=int, default=3, help="iterations of the iterative arms")
    parser.add_argument("--steps", type=int, default=24, help="DPO optimizer steps each arm spends")
    parser.add_argument("--seed", type=int, default=0, help="the world's seed")
    parser.add_argument("--database-url")
    parser.add_argument("--broker-url")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: the iterative and the other-answers arms differ from round 2 on")
    if args.train % args.rounds or args.steps % args.rounds:
        parser.error("--train and --steps must be multiples of --rounds, so every round gets an equal share")
    share, round_steps = args.train // args.rounds, args.steps // args.rounds
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="bench-ablations-") as tmp:
        app = ShapesApp(tmp, args.database_url, args.broker_url)
        build_minutes = app.set_up(args.train, args.heldout, args.seed)
        with app.worker():
            base = app.base_scores(CONFIG | {"policy": BASE_POLICY, "labeler": LABELER})
            print(f"\n{header()}")
            print(row("base policy", base), flush=True)

            def run(label: str, policy: str, start: int, stop: int, steps: int, **config) -> dict:
                number = app.create(policy, LABELER, CONFIG | {"max_steps": steps} | config, start, stop)
                report = app.train_and_report(number)
                print(report_row(f"{label} (it {number})", report), flush=True)
                return report

            runs = {
                "one_round": run("rlaifv, one round", BASE_POLICY, 0, args.train, args.steps),
                "whole_response": run(
                    "whole_response, one round", BASE_POLICY, 0, args.train, args.steps, strategy="whole_response"
                ),
            }
            policy = BASE_POLICY
            for n in range(args.rounds):
                runs["own"] = run(f"own answers, round {n + 1}", policy, n * share, (n + 1) * share, round_steps)
                policy = runs["own"]["checkpoint"]
                if n == 0:
                    other_policy = policy
            for n in range(1, args.rounds):
                runs["other"] = run(
                    f"base's answers, round {n + 1}",
                    other_policy,
                    n * share,
                    (n + 1) * share,
                    round_steps,
                    generator=BASE_POLICY,
                )
                other_policy = runs["other"]["checkpoint"]

    print(f"\nworld: {args.train} training instructions and {args.steps} DPO steps per arm ({args.rounds} rounds of "
          f"{share} and {round_steps} in the iterative arms), {args.heldout} held-out; {app.services}; models built "
          f"in {build_minutes:.1f} min; whole bench {(time.monotonic() - started) / 60:.1f} min")  # fmt: skip
    for ablation, *arms in ABLATIONS:
        for arm, name in arms:
            truth = runs[name]["metrics"]["eval"]["details"]["truth"]
            print(f"{ablation} {arm}: hallucination_reduction {1 - truth['chair_s'] / base['chair_s']:.3f} "
                  f"recall_kept {truth['recall'] / base['recall']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
