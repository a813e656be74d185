"""Reviewers override claims all at once: no server error, and every accepted review is in the database.

Usage:
    .venv/bin/python bench/reviewers_load.py [--reviewers 50] [--seconds 60] [--think 0]
        [--instructions 2000] [--answers 4] [--claims 10] [--hot 10] [--hot-share 0.5] [--workers 4]
        [--database-url postgres://postgres@127.0.0.1:5432/rlaifv_load] [--broker-url redis://127.0.0.1:6379/12]

Fills a fresh database with bench/web.py's fill (one iteration at its review gate, instructions × answers ×
claims claims, their verdicts and pairs), starts a Celery worker on the cpu and gpu queues, serves the app with
gunicorn (DEBUG off) as bench/web.py does and logs in one session per reviewer. Each reviewer then posts
overrides back to back (--think seconds apart) for --seconds: correct, hallucinated or unsure on a claim, an HTMX
POST with the CSRF token as the pair page's y/n/u keys send it. --hot-share of the overrides fall on --hot
instructions, so reviewers collide on one instruction's claims and re-score its pairs at the same time.
Checks: the 2xx answers equal the Review rows created, per reviewer and in total; no 5xx; every instruction's
stored pairs (and every answer's score) are what labeling.combine makes of the effective verdicts.
While they work, the database's connections are sampled for lock waits (reviews queueing behind each other's
row locks), and the CPU time each part spends is counted (gunicorn, PostgreSQL, the Celery worker, the clients):
its sum per override bounds the throughput the machine's cores allow whatever the locking. Prints the figures
last; exits 1 when a check fails. The gunicorn and worker logs stay in a temporary folder.
"""

import argparse
import http.client
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # run as a script, sys.path[0] is bench/

from bench.web import (  # noqa: E402
    Client,
    cpu_seconds,
    fill,
    migrated_database,
    percentile,
    serve,
    served_environment,
    server_pids,
    vacuum,
)

DECISIONS = {"correct": 45, "hallucinated": 45, "unsure": 10}  # the y / n / u keys


def make_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviewers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60, help="how long the reviewers work")
    parser.add_argument("--think", type=float, default=0.0, help="seconds a reviewer waits between overrides")
    parser.add_argument("--instructions", type=int, default=2_000)
    parser.add_argument("--answers", type=int, default=4, help="answers per instruction")
    parser.add_argument("--claims", type=int, default=10, help="claims per answer")
    parser.add_argument("--hot", type=int, default=10, help="instructions the contended overrides fall on")
    parser.add_argument("--hot-share", type=float, default=0.5, help="share of overrides on the hot instructions")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/rlaifv_load")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/12")
    return parser


def override(args, rng: random.Random) -> tuple[str, dict]:
    """A POST on a pair page of two answers of one instruction: one decision button on one of their claims.

    The fill numbers answers (i - 1) × answers + a + 1 and claims (answer - 1) × claims + k + 1.
    """
    hot = rng.random() < args.hot_share
    instruction = rng.randint(1, args.hot if hot else args.instructions)
    left, right = ((instruction - 1) * args.answers + a + 1 for a in rng.sample(range(args.answers), 2))
    claim = (rng.choice((left, right)) - 1) * args.claims + rng.randrange(args.claims) + 1
    decision = rng.choices(list(DECISIONS), list(DECISIONS.values()))[0]
    return f"/review/1/pairs/{left}-{right}/", {decision: claim}


def reviewer(args, n: int, client: Client, deadline: float, records: list) -> None:
    """Override claims until the deadline; record (reviewer, HTTP status or None, milliseconds) for each."""
    rng = random.Random(n)
    while time.monotonic() < deadline:
        path, form = override(args, rng)
        form["csrfmiddlewaretoken"] = client.cookies.get("csrftoken", "")  # the form's hidden field
        start = time.perf_counter()
        try:
            status, _ = client.request("POST", path, form, htmx=True)
        except (http.client.HTTPException, OSError):
            status = None
        records.append((n, status, (time.perf_counter() - start) * 1000))
        if args.think:
            time.sleep(args.think)


class CpuUse:
    """CPU seconds spent between `start` and `stop` by the gunicorn workers, their PostgreSQL backends, the Celery
    worker and this process (the simulated reviewers' threads): where an override's cost goes, since 2 cores
    run all of them."""

    def __init__(self, server: subprocess.Popen, worker: subprocess.Popen, database_url: str):
        self.server, self.worker, self.database_url = server, worker, database_url

    def sample(self) -> dict[str, dict[int, float]]:
        app, database = server_pids(self.server, self.database_url)
        return {
            "app (gunicorn)": cpu_seconds(app),
            "database": cpu_seconds(database),
            "celery worker": cpu_seconds([self.worker.pid]),
            "clients (this process)": {0: time.process_time()},
        }

    def start(self):
        self.before = self.sample()

    def stop(self):
        after = self.sample()
        self.used = {
            part: sum(t - self.before[part].get(pid, 0.0) for pid, t in times.items()) for part, times in after.items()
        }

    def per_override(self, overrides: int) -> dict[str, float]:
        """CPU milliseconds per override, by part."""
        return {part: 1000 * t / max(overrides, 1) for part, t in self.used.items()}

    def summary(self, overrides: int) -> str:
        per = self.per_override(overrides)
        total = sum(per.values())
        parts = ", ".join(f"{part} {ms:.1f}" for part, ms in per.items())
        bound = f"{os.cpu_count()} CPUs kept busy by this alone allow at most {allowed(total):.0f} overrides/s"
        return f"{total:.1f} ms per override ({parts}): {bound}"


def allowed(cpu_ms: float) -> float:
    """Overrides per second the machine's cores allow at `cpu_ms` of CPU each, whatever the locking."""
    return 1000 * (os.cpu_count() or 1) / cpu_ms if cpu_ms else float("inf")


class LockWaits(threading.Thread):
    """Samples, every 50 ms until stopped, how many of the bench database's connections wait for a lock (a row
    lock held by another review) and how many run a query: queueing behind locks, apart from the machine's load."""

    def __init__(self, database_url: str):
        super().__init__(daemon=True)
        self.database_url, self.samples, self.stop = database_url, [], threading.Event()

    def run(self):
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self.stop.wait(0.05):
                self.samples.append(
                    conn.execute(
                        "SELECT COUNT(*) FILTER (WHERE wait_event_type = 'Lock'), COUNT(*) FILTER (WHERE state = "
                        "'active') FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    ).fetchone()
                )

    def summary(self) -> str:
        waiting = [w for w, _ in self.samples] or [0]
        busy = sum(a for _, a in self.samples) or 1
        return (
            f"{statistics.mean(waiting):.2f} connections waiting for a lock on average (max {max(waiting)}), "
            f"{sum(waiting) / busy:.0%} of the active ones, over {len(self.samples)} samples"
        )


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    """A Celery worker on both queues, as pg_restart.py runs one; returns once it says it is ready."""
    from tests.workers import purge_queues

    purge_queues()
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "webapp", "worker", "-Q", "cpu,gpu", "--pool", "solo",
         "--loglevel", "info", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    for _ in range(300):
        if " ready." in log.read_text():
            return worker
        if worker.poll() is not None:
            break
        time.sleep(0.2)
    raise SystemExit(f"the Celery worker did not start; see {log}")


def serve_logged(args, env: dict, log: Path):
    """bench/web.py's serve, with gunicorn's stderr (the tracebacks of 500s) in `log`."""
    saved = os.dup(2)
    with log.open("w") as f:
        os.dup2(f.fileno(), 2)
    try:
        return serve(args, env)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def pair_mismatches() -> tuple[list[int], list[int]]:
    """Instructions whose stored pairs differ from labeling.combine over the effective verdicts, and answers
    whose cached score differs from −(effective rejections): what rebuild_pairs would make, for all at once.

    Computed through the SQL path (`response_scores`), not rebuild_pairs' own Python one, so the check is
    independent of the code it checks."""
    from labeling.combine import ScoredResponse, make_pairs
    from webapp.iterations.config import config
    from webapp.models import Iteration, PreferencePair, Response, ResponseStatus, response_scores
    from webapp.review.service import iteration_length_ratio

    iteration = Iteration.objects.get(number=1)
    cfg = config(iteration)
    responses = list(response_scores(Response.objects.filter(iteration=iteration, status=ResponseStatus.LABELED)))
    expected = make_pairs(
        [ScoredResponse(r.pk, r.instruction_id, r.text, r.n_rejected) for r in responses],
        k=cfg["pairs_per_instruction"],
        seed=cfg["seed"],
        length_balance=cfg["length_balance"],
        length_ratio=iteration_length_ratio(iteration) if cfg["length_balance"] else None,
    )
    want, have = defaultdict(list), defaultdict(list)
    for p in expected:
        want[p.instruction_id].append((p.chosen_id, p.rejected_id, p.score_gap))
    stored = PreferencePair.objects.filter(iteration=iteration)
    for instruction, *pair in stored.values_list("instruction_id", "chosen_id", "rejected_id", "score_gap"):
        have[instruction].append(tuple(pair))
    pairs = sorted(i for i in want.keys() | have.keys() if sorted(want[i]) != sorted(have[i]))
    return pairs, sorted(r.pk for r in responses if r.score != -r.n_rejected)


def main() -> int:
    args = make_parser().parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-reviewers-"))
    env = served_environment(args.database_url, logs / "var") | {"CELERY_BROKER_URL": args.broker_url}
    os.environ.update(env)
    import django

    migrated_database(args.database_url, env)
    django.setup()
    from django.db import connection, transaction
    from django.db.models import Count, Max

    from webapp.models import Review

    with transaction.atomic():
        fill(args)
    vacuum()
    before_pairs, before_scores = pair_mismatches()
    first_new = (Review.objects.aggregate(m=Max("pk"))["m"] or 0) + 1
    connection.close()

    worker = start_worker(env, logs / "worker.log")
    server = None
    records = []
    try:
        server = serve_logged(args, env, logs / "gunicorn.log")
        clients = [Client(server.port) for _ in range(args.reviewers)]
        with ThreadPoolExecutor(args.workers) as pool:  # one login per gunicorn worker: hashing is slow
            list(pool.map(lambda n: clients[n].log_in(f"reviewer{n}"), range(args.reviewers)))
        waits = LockWaits(args.database_url)
        waits.start()
        cpu = CpuUse(server, worker, args.database_url)
        cpu.start()
        start = time.monotonic()
        threads = [
            threading.Thread(target=reviewer, args=(args, n, c, start + args.seconds, records))
            for n, c in enumerate(clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        cpu.stop()
        waits.stop.set()
        waits.join()
        worker_alive = worker.poll() is None
    finally:
        for proc in (server, worker):
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)

    new = Review.objects.filter(pk__gte=first_new).values("reviewer__username").annotate(n=Count("pk"))
    rows = Counter({row["reviewer__username"]: row["n"] for row in new})
    after_pairs, after_scores = pair_mismatches()
    ok = Counter(f"reviewer{n}" for n, status, _ in records if status is not None and 200 <= status < 300)
    statuses = Counter(status for _, status, _ in records)
    server_errors = sum(v for s, v in statuses.items() if s is not None and s >= 500)
    other_errors = sum(v for s, v in statuses.items() if s is None or 300 <= s < 500)
    uneven = sorted(name for name in ok.keys() | rows.keys() if ok[name] != rows[name])
    times = [ms for _, status, ms in records if status is not None] or [0.0]
    lost = ok.total() - rows.total()
    log = (logs / "gunicorn.log").read_text()
    exceptions = Counter(re.findall(r"^(?:\w+\.)*\w+(?:Error|Exception): .*$", log, re.MULTILINE))

    print(f"\nlogs: {logs}")
    print(f"statuses: {dict(sorted(statuses.items(), key=str))}; gunicorn log tracebacks: {log.count('Traceback')}")
    for line, n in exceptions.most_common(5):
        print(f"  {n} x {line}")
    print(f"celery worker (cpu,gpu) still running at the end: {worker_alive}")
    print(f"reviewers whose 2xx count differs from their new rows: {len(uneven)} {uneven[:10]}")
    print(f"pairs before the run: {len(before_pairs)} instructions differ, {len(before_scores)} stale scores")
    print(f"pairs after the run: {len(after_pairs)} instructions differ {after_pairs[:10]}, "
          f"{len(after_scores)} stale scores {after_scores[:10]}")  # fmt: skip
    print(
        f"{args.reviewers} reviewers x {args.seconds:g} s, think {args.think:g} s, {args.instructions} instructions "
        f"({args.hot_share:.0%} of overrides on {args.hot}), gunicorn -w {args.workers}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"requests: {len(records)}")
    print(f"2xx: {ok.total()}")
    print(f"rows: {rows.total()}")
    print(f"lost (2xx - rows): {lost}")
    print(f"5xx: {server_errors}")
    print(f"other errors (3xx/4xx/transport): {other_errors}")
    print(f"lock waits: {waits.summary()}")
    print(f"CPU: {cpu.summary(len(records))}")
    print(f"latency: p50 {statistics.median(times):.1f} ms, p95 {percentile(times, 95):.1f} ms")
    print(f"throughput: {len(records) / elapsed:.1f} overrides/s")
    print(f"override_throughput_per_s: {len(records) / elapsed:.1f}")
    print(f"override_p95_ms: {percentile(times, 95):.1f}")
    failed = lost or uneven or server_errors or after_pairs or after_scores or not worker_alive
    print("FAIL" if failed else "OK")
    cpu_ms = sum(cpu.per_override(len(records)).values())
    cores = os.cpu_count()
    print(f"override_cpu_ms: {cpu_ms:.1f} (target <= 8; allows {allowed(cpu_ms):.0f} overrides/s on {cores} CPUs)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
