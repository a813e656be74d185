"""Real Celery workers and `manage.py` commands as subprocesses, on the test database and broker."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """The URL of the database this test runs on (pytest-django's test database)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Processes:
    """Starts workers and commands sharing the test's database, media, models and broker; stops them all."""

    def __init__(self, log_dir: Path, models_dir: Path, broker_url: str | None = None):
        self.log_dir, self.procs = log_dir, []
        self.env = os.environ | {
            "DATABASE_URL": test_database_url(),
            "CELERY_BROKER_URL": broker_url or settings.CELERY_BROKER_URL,
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "MODELS_DIR": str(models_dir),
            "VAR_DIR": str(settings.VAR_DIR),
            "STALE_JOB_SECONDS": "4",
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
        }

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.name = name
        self.procs.append(proc)
        return proc

    def worker(self, name: str = "w1", queues: str = "gpu,cpu") -> subprocess.Popen:
        return self.start(
            name,
            [
                "-m",
                "celery",
                "-A",
                "webapp",
                "worker",
                "-Q",
                queues,
                "--pool",
                "solo",
                "-n",
                f"{name}@%h",
                "--loglevel",
                "info",
                "--without-gossip",
                "--without-mingle",
            ],
        )

    def wait_ready(self, proc: subprocess.Popen, timeout: float = 120) -> None:
        """Block until the worker says it is ready to consume (it logs `<name>@host ready.`)."""
        deadline = time.monotonic() + timeout
        while " ready." not in self.log(proc.name):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"worker {proc.name} did not start:\n{self.log(proc.name)[-2000:]}")
            time.sleep(0.2)

    def manage(self, name: str, *args: str) -> subprocess.Popen:
        return self.start(name, ["manage.py", *args])

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL the process group: no clean shutdown, no acknowledgement, like a crashed machine."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        """SIGKILL every process group still running: a warm (SIGTERM) or cold (SIGQUIT) shutdown takes even an idle
        worker 5 s on the folder broker, 1 s on Redis. What a killed worker leaves in the broker, the next
        `purge_queues()` drops."""
        running = [proc for proc in self.procs if proc.poll() is None]
        for proc in running:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # it exited since
                pass
        for proc in running:
            proc.wait(10)


def purge_queues() -> None:
    """Drop messages a previous run left in the broker: queued ones, and on Redis the ones a killed worker had
    taken but not acknowledged (kombu keeps them in the `unacked` hash and restores them into their queue)."""
    from webapp.celery import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in ("cpu", "gpu"):
            try:
                channel.queue_purge(name)
            except Exception:  # the queue does not exist yet
                pass
        if hasattr(channel, "unacked_key"):  # kombu's Redis transport (the folder broker loses them with the worker)
            channel.client.delete(channel.unacked_key, channel.unacked_index_key)
