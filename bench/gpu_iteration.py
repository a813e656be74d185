"""A GPU run: whole iterations through Celery with vLLM generating and labelling and TRL training, on a GPU machine.

Usage:
    .venv/bin/python bench/gpu_iteration.py [--policy NAME --labeler NAME] [--iterations 2] [--train 64]
        [--heldout 32] [--n 10] [--chunk-size 16] [--config JSON] [--database-url URL] [--broker-url URL]

Without --policy/--labeler it runs the shapes world's trained tiny models (`build_shapes_models`); with them, the
checkpoints of those names under MODELS_DIR (e.g. llava-1.5-7b and llava-v1.6-34b; --config then sets their
engine options, e.g. '{"engine_options": {"labeler": {"tensor_parallel_size": 4}}}'). One worker takes the `gpu`
and `cpu` queues on this machine's GPUs. Iteration 1 runs from launch through training and evaluation; each
next one starts from the last checkpoint and is first estimated (webapp.iterations.eta.estimate) from the one before, so
the estimate's error is measured. Prints per stage: items, seconds, items per second, the GPUs' memory peak
while it ran (nvidia-smi, every 0.5 s) and the estimate's error. Needs CUDA and vLLM (requirements-gpu.txt,
docker/Dockerfile.gpu); elsewhere it says so and exits.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
SHAPES_CONFIG = {
    "chunk_size": 16,
    "max_new_tokens": 40,
    "epochs": 1,
    "learning_rate": 3e-5,
    # tiny models: a small share of the GPU is plenty, and leaves room for DPO's child after release
    "engine_options": {"policy": {"gpu_memory_utilization": 0.3}, "labeler": {"gpu_memory_utilization": 0.3}},
}


def missing_gpu_stack() -> str | None:
    """Why this machine cannot run the bench (no CUDA, no vLLM), or None."""
    missing = []
    if importlib.util.find_spec("vllm") is None:
        missing.append("vLLM is not installed (pip install -r requirements-gpu.txt, or docker/Dockerfile.gpu)")
    try:
        import torch

        if not torch.cuda.is_available():
            missing.append(f"torch {torch.__version__} sees no CUDA GPU")
    except ImportError:
        missing.append("torch is not installed")
    if not missing:
        return None
    return "bench/gpu_iteration.py needs a GPU machine: " + "; ".join(missing) + "."


def stage_throughput(jobs) -> dict[str, dict]:
    """Per stage, from its jobs' (kind, items, started, finished): its items, the wall seconds from its first
    start to its last finish, and items per second over them."""
    stages: dict[str, dict] = {}
    for kind, items, started, finished in jobs:
        stage = stages.setdefault(kind, {"items": 0, "start": started, "end": finished})
        stage["items"] += items
        stage["start"], stage["end"] = min(stage["start"], started), max(stage["end"], finished)
    for stage in stages.values():
        stage["seconds"] = (stage.pop("end") - stage.pop("start")).total_seconds()
        stage["per_second"] = stage["items"] / stage["seconds"] if stage["seconds"] > 0 else None
    return stages


def peaks_by_stage(samples, spans) -> dict[str, int]:
    """The highest memory sample (bytes, at a time) within each stage's (start, end)."""
    return {
        kind: max((used for at, used in samples if start <= at <= end), default=0)
        for kind, (start, end) in spans.items()
    }


def eta_errors(predicted: dict[str, float], actual: dict[str, float]) -> dict[str, float]:
    """Per stage and in total ("iteration"): (estimated − measured) / measured seconds, for stages both have."""
    from_both = [kind for kind in predicted if actual.get(kind)]
    errors = {kind: (predicted[kind] - actual[kind]) / actual[kind] for kind in from_both}
    total = sum(actual[kind] for kind in from_both)
    if total:
        errors["iteration"] = (sum(predicted[kind] for kind in from_both) - total) / total
    return errors


class MemorySampler(threading.Thread):
    """All GPUs' used memory every `every` seconds (nvidia-smi), as (time, bytes) samples."""

    def __init__(self, every: float = 0.5):
        super().__init__(daemon=True)
        self.every, self.samples, self.stopped = every, [], threading.Event()

    def run(self):
        query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
        while not self.stopped.is_set():
            out = subprocess.run(query, capture_output=True, text=True).stdout
            used = sum(int(line) for line in out.split() if line.strip().isdigit()) * 1024**2
            self.samples.append((datetime.now(UTC), used))
            self.stopped.wait(self.every)


def measure(number: int) -> tuple[dict, dict]:
    """An iteration's stage throughput and its stages' spans, from its jobs."""
    from webapp.models import Iteration, Job, JobState

    iteration = Iteration.objects.get(number=number)
    rows = Job.objects.filter(iteration=iteration, state=JobState.SUCCEEDED).values_list(
        "kind", "total", "started_at", "finished_at"
    )
    rows = [row for row in rows if row[2] and row[3]]
    spans: dict[str, tuple] = {}
    for kind, _, started, finished in rows:
        first, last = spans.get(kind, (started, finished))
        spans[kind] = (min(first, started), max(last, finished))
    return stage_throughput(rows), spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", help="a checkpoint under MODELS_DIR (default: the shapes world's policy)")
    parser.add_argument("--labeler", help="a checkpoint under MODELS_DIR (default: the shapes world's labeler)")
    parser.add_argument("--iterations", type=int, default=2, help="iterations to run; from the 2nd, ETAs are checked")
    parser.add_argument("--train", type=int, default=64, help="shapes-world training pictures")
    parser.add_argument("--heldout", type=int, default=32, help="shapes-world held-out pictures")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--config", type=json.loads, default={}, help="more config keys (engine_options, ...)")
    parser.add_argument("--database-url")
    parser.add_argument("--broker-url")
    args = parser.parse_args()
    if reason := missing_gpu_stack():
        sys.exit(reason)

    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {
            "VAR_DIR": tmp,
            "DATABASE_URL": args.database_url or f"sqlite:///{tmp}/bench.sqlite3",
            "CELERY_BROKER_URL": args.broker_url or "filesystem://localhost/",
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "DEBUG": "1",
            "TORCH_DEVICE": "cuda",
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(ROOT),
        }
        if args.policy or args.labeler:
            env["MODELS_DIR"] = os.environ.get("MODELS_DIR", str(ROOT / "var" / "models"))
        os.environ.update(env)
        import django

        django.setup()
        from webapp.iterations.eta import estimate
        from webapp.models import Iteration

        def manage(*command):
            subprocess.run([PY, "manage.py", *command], cwd=ROOT, env=env, check=True)

        manage("migrate", "--noinput")
        manage("load_shapes", "--train", str(args.train), "--heldout", str(args.heldout))
        if not (args.policy and args.labeler):
            manage("build_shapes_models")
        policy, labeler = args.policy or "shapes-policy", args.labeler or "shapes-labeler"
        config = (SHAPES_CONFIG if not args.policy else {}) | {"n": args.n} | args.config

        log = Path(tmp) / "worker.log"
        worker = subprocess.Popen(
            [PY, "-m", "celery", "-A", "webapp", "worker", "-Q", "gpu,cpu", "--pool", "solo", "--loglevel", "info",
             "--without-gossip", "--without-mingle", "--logfile", str(log)],
            cwd=ROOT, env=env,
        )  # fmt: skip
        sampler = MemorySampler()
        sampler.start()
        try:
            while not (log.exists() and "ready" in log.read_text()):
                time.sleep(0.5)
            for number in range(1, args.iterations + 1):
                model = policy if number == 1 else f"checkpoints/iteration-{number - 1}"
                manage("run_iteration", "--new", "--policy", model, "--labeler", labeler, "--engine", "vllm",
                       "--source", "shapes", "--config", json.dumps(config))  # fmt: skip
                guess = estimate(Iteration.objects.get(number=number))  # launched, nothing measured yet
                predicted = {stage.kind: stage.seconds for stage in guess.stages} if guess else {}
                manage("run_iteration", "--iteration", str(number), "--wait", "--poll", "5")
                manage("run_iteration", "--iteration", str(number), "--approve", "--wait", "--poll", "5")
                stages, spans = measure(number)
                peaks = peaks_by_stage(sampler.samples, spans)
                errors = eta_errors(predicted, {kind: s["seconds"] for kind, s in stages.items()})
                print(f"iteration {number} ({model} / {labeler}, n={config['n']}):")
                for kind, s in stages.items():
                    rate = f"{s['per_second']:.2f}/s" if s["per_second"] else "-"
                    error = f"{errors[kind]:+.0%}" if kind in errors else "-"
                    print(f"  {kind:9} {s['items']:7} items {s['seconds']:8.1f} s {rate:>10}  "
                          f"GPU peak {peaks[kind] / 1024**3:6.1f} GiB  ETA error {error}")  # fmt: skip
                if "iteration" in errors:
                    print(f"  eta_error: {errors['iteration']:+.3f}")
        finally:
            sampler.stopped.set()
            worker.terminate()
            worker.wait()


if __name__ == "__main__":
    main()
