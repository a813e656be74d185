"""Does the loop cut hallucination, and is it the feedback? RLAIF-V in the shapes world, through the real app.

Usage:
    .venv/bin/python bench/shapes.py [--iterations 3] [--train 500] [--heldout 500]
                                     [--database-url postgres://…] [--broker-url redis://…]

The shapes world (labeling/shapes.py) knows the truth of every claim. This builds its trained tiny models
(`manage.py build_shapes_models`), draws the instruction sets (`load_shapes`), starts one Celery worker and runs
two arms of `--iterations` iterations each from the same base policy, every step through `run_iteration`:
- feedback: the trained labeler judges the claims, as RLAIF-V does;
- control: the same loop with the labeler's verdicts replaced by coin flips (labeler `coin-flip`).
An iteration is `run_iteration --new --wait` (generate → divide → label → combine, to the review gate), then
`run_iteration --approve --wait` (DPO on its pairs, then the evaluate stage on the held-out images, scored
against their true objects). The next iteration of an arm starts from that arm's last checkpoint. The base
policy is scored once by the same library call the evaluate stage makes.

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
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The checkout's root is on the path first, so these import the project's modules.
from bench.pipeline import fresh_postgres  # noqa: E402
from training.shapes_models import ITERATION_CONFIG as CONFIG  # noqa: E402
from training.shapes_models import LABELER  # noqa: E402
from training.shapes_models import POLICY as BASE_POLICY  # noqa: E402

PY = sys.executable
BASE_EVAL = """
import json, sys
import django; django.setup()
from pathlib import Path
from django.conf import settings
from labeling.backends import load_backend
from labeling.backends.base import Sampling
from labeling.generate import Instruction as LabelingInstruction
from training.evaluate import answer_and_judge, truth_scores
from webapp.config import DEFAULT_CONFIG
from webapp.engines import resolve_model
from webapp.models import Instruction
cfg = json.loads(sys.argv[1])
held_out = list(Instruction.objects.filter(split="heldout").order_by("pk"))
answers = answer_and_judge(
    load_backend("transformers", resolve_model(cfg["policy"]), device=settings.TORCH_DEVICE),
    load_backend("transformers", resolve_model(cfg["labeler"]), device=settings.TORCH_DEVICE),
    [LabelingInstruction(i.pk, Path(i.image.path), i.question) for i in held_out],
    sampling=Sampling(temperature=cfg["eval_temperature"], max_new_tokens=cfg["max_new_tokens"]),
    seed=DEFAULT_CONFIG["seed"],
)
print(json.dumps(truth_scores(answers, {i.pk: i.objects_present for i in held_out})))
"""

REPORT = """
import json, sys
import django; django.setup()
from django.db.models import Max, Min
from webapp.models import Iteration, Job
it = Iteration.objects.get(number=int(sys.argv[1]))
span = Job.objects.filter(iteration=it).aggregate(start=Min("created_at"), end=Max("finished_at"))
print(json.dumps({"status": it.status, "error": it.error, "checkpoint": it.checkpoint, "metrics": it.metrics,
                  "pairs": it.pairs.count(), "minutes": (span["end"] - span["start"]).total_seconds() / 60}))
"""


def row(label: str, truth: dict, feedback: dict | None = None, pairs: str = "", minutes: str = "") -> str:
    def pct(value):
        return "   —  " if value is None else f"{value:6.3f}"

    labeler = pct((feedback or {}).get("labeler_accuracy"))
    return (f"{label:<22} {pct(truth['chair_s'])} {pct(truth['chair_i'])} {pct(truth['recall'])} "
            f"{truth['mean_words']:6.1f} {labeler} {pairs:>16} {minutes:>6}")  # fmt: skip


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

    if args.database_url and args.database_url.startswith("postgres"):
        fresh_postgres(args.database_url)
    with tempfile.TemporaryDirectory(prefix="bench-shapes-") as tmp:
        env = os.environ | {
            "VAR_DIR": tmp,
            "DATABASE_URL": args.database_url or f"sqlite:///{tmp}/bench.sqlite3",
            "CELERY_BROKER_URL": args.broker_url or "filesystem://localhost/",
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "DEBUG": "1",  # development settings: no key or hosts to give
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(ROOT),
        }

        def manage(*command) -> str:
            done = subprocess.run([PY, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"manage.py {' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
            return done.stdout

        def python(script: str, *argv: str) -> dict:
            out = subprocess.run([PY, "-c", script, *argv], cwd=ROOT, env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"script failed:\n{out.stderr[-3000:]}")
            return json.loads(out.stdout.strip().splitlines()[-1])

        manage("migrate", "--noinput")
        t0 = time.monotonic()
        print(manage("build_shapes_models").strip().splitlines()[-1], flush=True)
        build_minutes = (time.monotonic() - t0) / 60
        manage("load_shapes", "--train", str(args.train), "--heldout", str(args.heldout), "--seed", str(args.seed))

        log = Path(tmp) / "worker.log"
        worker = subprocess.Popen(
            [PY, "-m", "celery", "-A", "webapp", "worker", "-Q", "gpu,cpu", "--pool", "solo", "--loglevel", "info",
             "--without-gossip", "--without-mingle", "--logfile", str(log)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            base = python(BASE_EVAL, json.dumps(CONFIG | {"policy": BASE_POLICY, "labeler": LABELER}))
            print(f"\n{'iteration':<22} {'CHAIRs':>6} {'CHAIRi':>6} {'recall':>6} {'words':>6} {'lab.acc':>6} "
                  f"{'pairs (right/wrong)':>16} {'min':>6}")  # fmt: skip
            print(row("base policy", base), flush=True)
            finals, number = {}, 0
            for arm, labeler in (("feedback", LABELER), ("control", "coin-flip")):
                policy = BASE_POLICY
                for step in range(1, args.iterations + 1):
                    number += 1
                    manage("run_iteration", "--new", "--policy", policy, "--labeler", labeler, "--source", "shapes",
                           "--config", json.dumps(CONFIG), "--wait", "--poll", "1")  # fmt: skip
                    manage("run_iteration", "--iteration", str(number), "--approve", "--wait", "--poll", "1")
                    report = python(REPORT, str(number))
                    if report["status"] != "done":
                        sys.exit(f"iteration {number} ended {report['status']}: {report['error']}")
                    truth = report["metrics"]["eval"]["details"]["truth"]
                    feedback = report["metrics"].get("feedback", {})
                    pairs = f"{report['pairs']} ({feedback.get('pairs_right', 0)}/{feedback.get('pairs_wrong', 0)})"
                    print(row(f"{arm} {step} (it {number})", truth, feedback, pairs, f"{report['minutes']:.1f}"),
                          flush=True)  # fmt: skip
                    policy, finals[arm] = report["checkpoint"], truth
        finally:
            worker.kill()
            worker.wait()

    reduction = 1 - finals["feedback"]["chair_s"] / base["chair_s"]
    control = 1 - finals["control"]["chair_s"] / base["chair_s"]
    print(f"\nworld: {args.train} training images, {args.heldout} held-out; database "
          f"{env['DATABASE_URL'].split(':')[0]}, broker {env['CELERY_BROKER_URL'].split(':')[0]}; models built in "
          f"{build_minutes:.1f} min; whole bench {(time.monotonic() - started) / 60:.1f} min")  # fmt: skip
    print(f"base labeler accuracy on held-out claims: {base['labeler_accuracy']:.3f}")
    print(f"hallucination_reduction: {reduction:.3f}")
    print(f"recall_kept: {finals['feedback']['recall'] / base['recall']:.3f}")
    print(f"control_reduction: {control:.3f}")


if __name__ == "__main__":
    main()
