"""Fault run: PostgreSQL restarts in the middle of an iteration; the tasks retry and nothing is lost.

Usage:
    .venv/bin/python bench/pg_restart.py [--broker-url redis://127.0.0.1:6379/10]

Starts a PostgreSQL cluster of its own (initdb on a free port under a temporary folder, so the machine's
server is not touched), a real Celery worker and `run_iteration --wait`. It runs one clean iteration,
then a second one during whose labeling stage the server is restarted (fast shutdown: every connection is
cut). The second must reach the review gate with exactly the rows of the first. Prints the counts last.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG_BIN = (
    Path("/usr/lib/postgresql")
    / (os.listdir("/usr/lib/postgresql")[0] if Path("/usr/lib/postgresql").exists() else "")
    / "bin"
)
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A throw-away PostgreSQL server run by the postgres user (initdb refuses root)."""

    def __init__(self, folder: Path, port: int):
        self.data, self.port = folder / "pgdata", port
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "postgres")
        self._as_postgres(PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth", "trust", "-E", "UTF8")

    def _as_postgres(self, *args):
        subprocess.run(["runuser", "-u", "postgres", "--", *map(str, args)], check=True, capture_output=True)

    def pg_ctl(self, *args):
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-o", options, "-w", "-l", self.data / "log", *args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/10")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pgrestart-"))
    os.chmod(tmp, 0o755)
    cluster = Cluster(tmp / "pg", free_port())
    cluster.pg_ctl("start")
    url = f"postgres://postgres@127.0.0.1:{cluster.port}/postgres"
    env = os.environ | {
        "VAR_DIR": str(tmp / "var"), "DATABASE_URL": url, "CELERY_BROKER_URL": args.broker_url,
        "DJANGO_SETTINGS_MODULE": "webapp.settings", "HF_HUB_OFFLINE": "1", "STALE_JOB_SECONDS": "5", "DEBUG": "1",
    }  # fmt: skip
    os.environ.update(env)
    procs = []
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        from tests.rows import snapshot
        from tests.workers import purge_queues
        from webapp.models import Instruction, Iteration, Job, JobState

        call_command("migrate", verbosity=0)
        call_command("build_tiny_models", stdout=open(os.devnull, "w"))
        call_command("load_samples")
        purge_queues()
        log = open(tmp / "worker.log", "w")
        procs.append(subprocess.Popen(
            [PY, "-m", "celery", "-A", "webapp", "worker", "-Q", "gpu,cpu", "--pool", "solo", "--loglevel", "info",
             "--without-gossip", "--without-mingle"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        ))  # fmt: skip

        def iteration(number):
            it = Iteration.objects.create(
                number=number, policy="small-llava", labeler="small-llava",
                config={"n": 4, "max_new_tokens": 16, "chunk_size": 2, "label_batch": 1},
            )  # fmt: skip
            it.instructions.set(Instruction.objects.filter(split="train"))
            command = [PY, "manage.py", "run_iteration", "--iteration", str(number), "--wait", "--poll", "0.5"]
            return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        clean = iteration(1)
        assert clean.wait(600) == 0, clean.stderr.read()
        follower = iteration(2)
        label_jobs = Job.objects.filter(iteration__number=2, kind="label")
        while not label_jobs.filter(state=JobState.SUCCEEDED).exists():
            time.sleep(0.02)
        unfinished = label_jobs.exclude(state=JobState.SUCCEEDED).count()
        connection.close()
        started = time.monotonic()
        cluster.pg_ctl("restart", "-m", "fast")
        restart_s = time.monotonic() - started
        returncode = follower.wait(600)
        errors = follower.stderr.read().decode()
        first, second = Iteration.objects.get(number=1), Iteration.objects.get(number=2)
        try:
            same = snapshot(first) == snapshot(second)
            duplicates = 0
        except AssertionError:
            same, duplicates = False, 1
        retries = (tmp / "worker.log").read_text().count("Retry in")
        rows = snapshot(first) if not duplicates else {}
        print(f"restarted PostgreSQL during labeling with {unfinished} label chunks unfinished ({restart_s:.1f} s)")
        rode_out = errors.count("database unavailable")
        print(f"run_iteration exit code: {returncode}; database errors it rode out: {rode_out}")
        print(f"task retries after the restart: {retries}")
        print(f"clean run: {', '.join(f'{k} {len(v)}' for k, v in rows.items())}")
        print(f"after restart: status {second.status}; rows identical to the clean run: {same}")
        lost = 0 if same else 1
        print(f"lost_or_changed_writes: {lost}  duplicates: {duplicates}")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        cluster.pg_ctl("stop", "-m", "immediate")


if __name__ == "__main__":
    main()
