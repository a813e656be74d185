"""Orchestration overhead: one iteration through Celery vs the bare `labeling` library, same data, same run.

Usage:
    .venv/bin/python bench/pipeline.py [--n 10] [--max-new-tokens 48] [--database-url URL] [--broker-url URL]

Both sides run the sample instructions on the tiny local model (policy = labeler), load it once, and
include that load. The Celery side is timed from the launch to the review gate, from the database's
own timestamps, with one worker already started; the library side is `labeling.pipeline.run_pipeline` in a
fresh process. By default the database is SQLite and the broker a folder, both in a temporary directory;
pass PostgreSQL/Redis URLs to measure those. Both sides run `--repeats` times, interleaved, each Celery run
an iteration of its own on a freshly started worker (so it loads the model again), and the best of each is
kept: other load on the machine only adds time. Prints `pipeline_overhead` = celery / library − 1 last
(target ≤ 0.15).
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
PY = sys.executable

LIBRARY = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from labeling.backends import load_backend
from labeling.backends.base import Sampling
from labeling.generate import Instruction
from labeling.pipeline import run_pipeline
cfg = json.loads(sys.argv[1])
backend = load_backend("transformers", cfg["model"])
instructions = [Instruction(i, Path(p), q) for i, p, q in cfg["instructions"]]
run = run_pipeline(instructions, backend, backend, n=cfg["n"], batch=cfg["batch"],
                   sampling=Sampling(temperature=0.7, max_new_tokens=cfg["max_new_tokens"]))
print(json.dumps({"seconds": time.perf_counter() - t0, "responses": len(run.responses), "claims": len(run.claims),
                  "pairs": len(run.pairs)}))
"""

ITERATION = """
import json, sys
import django; django.setup()
from django.db.models import Max, Min
from webapp.models import Instruction, Job, Iteration
cmd = sys.argv[1]
if cmd == "instructions":
    rows = Instruction.objects.filter(split="train").order_by("pk")
    print(json.dumps([[i.pk, i.image.path, i.question] for i in rows]))
else:
    it = Iteration.objects.get(number=int(sys.argv[2]))
    span = Job.objects.filter(iteration=it).aggregate(start=Min("created_at"), end=Max("finished_at"))
    stages = {}
    for job in Job.objects.filter(iteration=it):
        first, last = stages.get(job.kind, (job.started_at, job.finished_at))
        stages[job.kind] = (min(first, job.started_at), max(last, job.finished_at))
    print(json.dumps({"seconds": (span["end"] - span["start"]).total_seconds(), "status": it.status,
                      "responses": it.responses.count(), "pairs": it.pairs.count(),
                      "stages": {k: round((b - a).total_seconds(), 2) for k, (a, b) in stages.items()}}))
"""


def fresh_postgres(url: str) -> None:
    """Drop and create the benchmark's PostgreSQL database, so every run starts empty."""
    import dj_database_url
    import psycopg

    db = dj_database_url.parse(url)
    with psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"] or None,
                         dbname="postgres", autocommit=True) as conn:  # fmt: skip
        conn.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def run_iteration(manage, env: dict, tmp: str, model: str, args, number: int) -> dict:
    """Iteration `number` through a worker started for it, from launch to the review gate."""
    log = Path(tmp) / f"worker-{number}.log"
    worker = subprocess.Popen(
        [PY, "-m", "celery", "-A", "webapp", "worker", "-Q", "gpu,cpu", "--pool", "solo", "--loglevel", "info",
         "--without-gossip", "--without-mingle", "--logfile", str(log)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while not (log.exists() and "ready" in log.read_text()):
            time.sleep(0.2)
        manage(
            "run_iteration", "--new", "--policy", model, "--labeler", model, "--source", "demo",
            "--n", str(args.n), "--max-new-tokens", str(args.max_new_tokens), "--wait", "--poll", "0.2",
        )  # fmt: skip
        return json.loads(subprocess.check_output([PY, "-c", ITERATION, "span", str(number)], cwd=ROOT, env=env))
    finally:
        worker.terminate()
        worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--database-url")
    parser.add_argument("--broker-url")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, interleaved; best kept")
    args = parser.parse_args()

    if args.database_url and args.database_url.startswith("postgres"):
        fresh_postgres(args.database_url)
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {
            "VAR_DIR": tmp,
            "DATABASE_URL": args.database_url or f"sqlite:///{tmp}/bench.sqlite3",
            "CELERY_BROKER_URL": args.broker_url or "filesystem://localhost/",
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "DEBUG": "1",  # development settings: no key or hosts to give
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(ROOT),
        }

        def manage(*a):
            subprocess.run([PY, "manage.py", *a], cwd=ROOT, env=env, check=True, capture_output=True)

        for command in (["migrate", "--noinput"], ["build_tiny_models"], ["load_samples"]):
            manage(*command)
        instructions = json.loads(subprocess.check_output([PY, "-c", ITERATION, "instructions"], cwd=ROOT, env=env))
        model = f"{tmp}/models/tiny-llava"

        config = {"model": model, "instructions": instructions, "n": args.n, "max_new_tokens": args.max_new_tokens,
                  "batch": 8}  # fmt: skip
        celery_runs, library_runs = [], []
        for number in range(1, args.repeats + 1):
            celery_runs.append(run_iteration(manage, env, tmp, model, args, number))
            library = subprocess.check_output([PY, "-c", LIBRARY, json.dumps(config)], cwd=ROOT, env=env)
            library_runs.append(json.loads(library))
        celery = min(celery_runs, key=lambda run: run["seconds"])
        library = min(library_runs, key=lambda run: run["seconds"])

    print(f"repeats: {args.repeats}  celery runs: {[round(r['seconds'], 2) for r in celery_runs]}  "
          f"library runs: {[round(r['seconds'], 2) for r in library_runs]}")  # fmt: skip
    print(f"instructions: {len(instructions)}  n: {args.n}  max_new_tokens: {args.max_new_tokens}")
    print(f"broker: {env['CELERY_BROKER_URL'].split('://')[0]}  database: {env['DATABASE_URL'].split('://')[0]}")
    print(f"library: {library['seconds']:.2f} s ({library['responses']} responses, {library['claims']} claims, "
          f"{library['pairs']} pairs)")  # fmt: skip
    print(f"celery:  {celery['seconds']:.2f} s ({celery['responses']} responses, {celery['pairs']} pairs, "
          f"ended {celery['status']})")  # fmt: skip
    print(f"celery stages (first start to last finish): {celery['stages']}")
    print(f"pipeline_overhead: {celery['seconds'] / library['seconds'] - 1:+.3f}")


if __name__ == "__main__":
    main()
