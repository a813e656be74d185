"""The shapes world run through the real app, for the benches that measure the loop (bench/shapes.py,
bench/ablations.py): a throwaway app (its own VAR_DIR, database and broker), the trained tiny models built,
the world's instructions loaded, one Celery worker, and iterations driven by `manage.py run_iteration`.

Everything runs in subprocesses with the app's environment, as a user would run it; the scripts below read
the database through Django and print one JSON line.
"""

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.pipeline import fresh_postgres

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

# The base policy's held-out answers against the truth, by the library call the evaluate stage makes.
BASE_EVAL = """
import json, sys
import django; django.setup()
from pathlib import Path
from django.conf import settings
from labeling.backends import load_backend
from labeling.backends.base import Sampling
from labeling.generate import Instruction as LabelingInstruction
from training.evaluate import answer_and_judge, truth_scores
from webapp.iterations.config import DEFAULT_CONFIG
from webapp.jobs.engines import resolve_model
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

# A draft iteration on a slice of the training instructions (in import order), so rounds can take disjoint ones.
CREATE = """
import json, sys
import django; django.setup()
from webapp.iterations.creating import create_iteration
from webapp.models import Instruction
spec = json.loads(sys.argv[1])
train = list(Instruction.objects.filter(split="train", source="shapes").order_by("pk"))
it = create_iteration(instructions=train[spec["start"]:spec["stop"]], policy=spec["policy"],
                      labeler=spec["labeler"], config=spec["config"])
print(json.dumps({"number": it.number}))
"""

# Each picture's answer of an evaluation against its true objects: hallucinated (count-aware and set-based),
# whether it names any object, the true objects it names and holds, whether it repeats a claim, its words.
PICTURES = """
import json, sys
from collections import Counter
from pathlib import Path
import django; django.setup()
from django.conf import settings
from labeling.answer_shape import answer_shape
from labeling.divide import QuestionAnswer, divide
from labeling.shapes import mentioned_objects
from webapp.models import Instruction, Iteration
it = Iteration.objects.get(number=int(sys.argv[1]))
name = it.metrics[sys.argv[2]]["details"]["answers_file"]
path = next(p for p in (Path(settings.MODELS_DIR) / name, Path(settings.VAR_DIR) / name) if p.exists())
rows = [json.loads(line) for line in path.read_text().splitlines()]
instructions = Instruction.objects.in_bulk([r["instruction"] for r in rows])
pictures = []
for row in sorted(rows, key=lambda r: r["instruction"]):
    instruction, text = instructions[row["instruction"]], row["answer"]
    truth, named = instruction.objects_present, mentioned_objects(row["answer"])
    claims = divide([QuestionAnswer(instruction.question, text)], "rule")[0].claims
    pictures.append({
        "id": instruction.pk,
        "count_hallucinated": bool(Counter(named) - Counter(truth)),
        "hallucinated": bool(set(named) - set(truth)),
        "names_objects": bool(named),
        "recalled": len(set(named) & set(truth)),
        "true_objects": len(truth),
        "repeats": answer_shape(text, [c.text for c in claims]).repeated_claims > 0,
        "words": len(text.split()),
    })
print(json.dumps({"pictures": pictures}))
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


class ShapesApp:
    """The app in a temporary VAR_DIR; `manage(...)` and `python(script, ...)` run in its environment."""

    def __init__(self, tmp: str, database_url: str | None, broker_url: str | None):
        if database_url and database_url.startswith("postgres"):
            fresh_postgres(database_url)
        self.tmp = tmp
        self.env = os.environ | {
            "VAR_DIR": tmp,
            "DATABASE_URL": database_url or f"sqlite:///{tmp}/bench.sqlite3",
            "CELERY_BROKER_URL": broker_url or "filesystem://localhost/",
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "DEBUG": "1",  # development settings: no key or hosts to give
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(ROOT),
        }

    @property
    def services(self) -> str:
        """ "postgres, redis" or "sqlite, filesystem": what the run was measured on."""
        return (
            f"database {self.env['DATABASE_URL'].split(':')[0]}, broker {self.env['CELERY_BROKER_URL'].split(':')[0]}"
        )

    def manage(self, *command: str) -> str:
        done = subprocess.run([PY, "manage.py", *command], cwd=ROOT, env=self.env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"manage.py {' '.join(command)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return done.stdout

    def python(self, script: str, *argv: str) -> dict:
        out = subprocess.run([PY, "-c", script, *argv], cwd=ROOT, env=self.env, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"script failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def set_up(self, train: int, heldout: int, seed: int, validation: int = 0) -> float:
        """Migrate, build the shapes models, load the world; returns the minutes the models took to build."""
        self.manage("migrate", "--noinput")
        started = time.monotonic()
        print(self.manage("build_shapes_models").strip().splitlines()[-1], flush=True)
        minutes = (time.monotonic() - started) / 60
        counts = ["--train", str(train), "--validation", str(validation), "--heldout", str(heldout)]
        self.manage("load_shapes", *counts, "--seed", str(seed))
        return minutes

    def answers(self, number: int, which: str) -> list[dict]:
        """Per picture of the evaluated split, in instruction order: what iteration `number`'s evaluation ("eval")
        or baseline ("baseline") answered, scored against the truth (PICTURES)."""
        return self.python(PICTURES, str(number), which)["pictures"]

    @contextlib.contextmanager
    def worker(self):
        """One Celery worker on both queues, killed on exit; its log is worker.log in the VAR_DIR."""
        worker = subprocess.Popen(
            [PY, "-m", "celery", "-A", "webapp", "worker", "-Q", "gpu,cpu", "--pool", "solo", "--loglevel", "info",
             "--without-gossip", "--without-mingle", "--logfile", str(Path(self.tmp) / "worker.log")],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            yield worker
        finally:
            worker.kill()
            worker.wait()

    def base_scores(self, config: dict) -> dict:
        """The truth scores of `config["policy"]`'s held-out answers, judged by `config["labeler"]`."""
        return self.python(BASE_EVAL, json.dumps(config))

    def create(self, policy: str, labeler: str, config: dict, start: int, stop: int) -> int:
        """A draft on the training instructions [start, stop) in import order; returns its number."""
        spec = {"policy": policy, "labeler": labeler, "config": config, "start": start, "stop": stop}
        return self.python(CREATE, json.dumps(spec))["number"]

    def train_and_report(self, number: int) -> dict:
        """Launch iteration `number` to its review gate, approve it (train, evaluate), and report it."""
        self.manage("run_iteration", "--iteration", str(number), "--wait", "--poll", "1")
        self.manage("run_iteration", "--iteration", str(number), "--approve", "--wait", "--poll", "1")
        report = self.python(REPORT, str(number))
        if report["status"] != "done":
            sys.exit(f"iteration {number} ended {report['status']}: {report['error']}")
        return report


def header() -> str:
    return (f"{'iteration':<34} {'CHAIRs':>6} {'count':>6} {'CHAIRi':>6} {'recall':>6} {'words':>6} {'lab.acc':>6} "
            f"{'pairs (right/wrong)':>16} {'min':>6}")  # fmt: skip


def row(label: str, truth: dict, feedback: dict | None = None, pairs: str = "", minutes: str = "") -> str:
    """One line of the benches' table: truth rates, length, the labeler's accuracy on the claims, pairs, time."""

    def pct(value):
        return "   —  " if value is None else f"{value:6.3f}"

    labeler = pct((feedback or {}).get("labeler_accuracy"))
    return (f"{label:<34} {pct(truth['chair_s'])} {pct(truth.get('count_chair_s'))} {pct(truth['chair_i'])} "
            f"{pct(truth['recall'])} "
            f"{truth['mean_words']:6.1f} {labeler} {pairs:>16} {minutes:>6}")  # fmt: skip


def report_row(label: str, report: dict) -> str:
    """`row` for an iteration's report (REPORT): its evaluation against the truth and its feedback."""
    feedback = report["metrics"].get("feedback", {})
    pairs = f"{report['pairs']} ({feedback.get('pairs_right', 0)}/{feedback.get('pairs_wrong', 0)})"
    return row(label, report["metrics"]["eval"]["details"]["truth"], feedback, pairs, f"{report['minutes']:.1f}")
