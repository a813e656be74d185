"""The review UI at a million claims: PostgreSQL filled by COPY, gunicorn on 127.0.0.1, real HTTP clients.

Usage:
    .venv/bin/python bench/web.py [--instructions 25000] [--answers 4] [--claims 10] [--requests 100]
        [--reviewers 20] [--seconds 30] [--workers 4] [--database-url postgres://postgres@127.0.0.1:5432/rlaifv_bench]
        [--keep]

Fills a fresh database (dropped and created; --keep re-uses one already filled) with one iteration at its
review gate: instructions × answers × claims claims (default 25k × 4 × 10 = 1M), their verdicts, the pairs
labeling.combine makes of them, and 1% of claims reviewed. Then serves the app with gunicorn (DEBUG off,
persistent connections) and logs in one session per reviewer over HTTP.
(a) one client, requests one after another, per endpoint: pair list (first page, a deep keyset page, a
    filtered page), pair page, spot-check queue, override (an HTMX POST that re-scores and rebuilds pairs);
    p50/p95 each, target p95 < 50 ms; the dashboard (target p95 < 50 ms at 1M claims, < 100 ms at 10M); and,
    for reference, the login page (the floor: a page with no data). The endpoints take turns in ten rounds, and
    each one's server CPU per request (the gunicorn workers' and the PostgreSQL backends', read from schedstat)
    is printed with its ratio to the login page's; the worst ratio last (target <= 2 at 1M, <= 3 at 10M).
(b) --reviewers simulated reviewers, each sending one request a second (a mix of the target endpoints) for
    --seconds; p50/p95 and errors. Targets: p95 < 100 ms, 0 errors.
Then, per endpoint, the plans of the queries it runs (EXPLAIN ANALYZE): the indexes read and the rows each
scan returned (a sequential scan: the rows it read), and the SQL time.
Prints the fill time first and the figures last. Ten million claims:
    .venv/bin/python bench/web.py --instructions 100000 --answers 10 --claims 10
"""

import argparse
import http.client
import json
import os
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # run as a script, sys.path[0] is bench/
PASSWORD = "bench reviewer password"
SOURCES = ["coco", "vqav2", "textvqa", "landmarks"]
WORDS = "the a cat dog red blue table sofa window man woman car tree sky street sign book cup plate".split()


def make_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instructions", type=int, default=25_000)
    parser.add_argument("--answers", type=int, default=4, help="answers per instruction")
    parser.add_argument("--claims", type=int, default=10, help="claims per answer")
    parser.add_argument("--requests", type=int, default=100, help="(a): requests per endpoint")
    parser.add_argument("--reviewers", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=30, help="(b): how long the reviewers work")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/rlaifv_bench")
    parser.add_argument("--keep", action="store_true", help="re-use the database when it is already filled")
    return parser


# --- the data ------------------------------------------------------------------------------------------------


def served_environment(database_url: str, var_dir) -> dict:
    """The environment the app is served with: production settings (DEBUG off) over plain HTTP on 127.0.0.1."""
    return os.environ | {
        "DATABASE_URL": database_url,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "SECURE_COOKIES": "0",
        "DB_CONN_MAX_AGE": "600",
        "VAR_DIR": str(var_dir),
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "webapp.settings",
    }


def recreate_database(url: str, keep: bool = False) -> None:
    """Drop and create the database; with `keep`, only create it when it does not exist."""
    import psycopg

    parts = urlparse(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if keep and exists:
            return
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def migrated_database(url: str, env: dict, keep: bool = False) -> None:
    """`recreate_database`, then the project's migrations run on it (in a subprocess with `env`)."""
    recreate_database(url, keep=keep)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def vacuum() -> None:
    """VACUUM ANALYZE the filled database, after the fill's transaction: statistics, and the visibility map an
    index-only scan needs (autovacuum keeps both on a live database)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def fill(args) -> None:
    """One iteration at its review gate, written with COPY; pairs made by labeling.combine as the stage would."""
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction

    from labeling.combine import ScoredResponse, combine_pairs

    rng = random.Random(0)
    now = datetime.now(UTC)
    n_i, n_a, n_c = args.instructions, args.answers, args.claims
    responses = []
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO auth_group (id, name) VALUES (1, 'reviewer')")
        password = make_password(PASSWORD)
        with cursor.copy(
            "COPY auth_user (id, password, is_superuser, username, first_name, last_name, email, "
            "is_staff, is_active, date_joined) FROM STDIN"
        ) as copy:
            for u in range(args.reviewers):
                copy.write_row((u + 1, password, False, f"reviewer{u}", "", "", "", False, True, now))
        with cursor.copy("COPY auth_user_groups (user_id, group_id) FROM STDIN") as copy:
            for u in range(args.reviewers):
                copy.write_row((u + 1, 1))
        cursor.execute(
            "INSERT INTO webapp_iteration (id, number, policy, labeler, splitter, engine, config, status, error, "
            "stopped_stage, checkpoint, metrics, margin, created_at, updated_at) VALUES (1, 1, 'bench-policy', "
            "'bench-labeler', 'rule', 'transformers', '{\"pairs_per_instruction\": 2}', 'reviewing', '', '', '', "
            "'{}', 0, %s, %s)",
            [now, now],
        )
        with cursor.copy(
            "COPY webapp_instruction (id, image, image_sha256, width, height, question, source, split, "
            "created_at) FROM STDIN"
        ) as copy:
            for i in range(1, n_i + 1):
                sha = f"{i:064x}"
                copy.write_row(
                    (
                        i,
                        f"images/{sha[:2]}/{sha}.png",
                        sha,
                        640,
                        480,
                        f"Describe picture {i} in detail.",
                        SOURCES[i % len(SOURCES)],
                        "train",
                        now,
                    )
                )
        with cursor.copy("COPY webapp_iteration_instructions (iteration_id, instruction_id) FROM STDIN") as copy:
            for i in range(1, n_i + 1):
                copy.write_row((1, i))
    with connection.cursor() as cursor:
        texts, rejected, p_yes_of, claim_id = {}, {}, array("d"), 0  # a compact p_yes per claim, for 10M
        with cursor.copy("COPY webapp_claim (id, response_id, index, text, question, divided_by) FROM STDIN") as copy:
            for i in range(1, n_i + 1):
                hallucination_rate = rng.random() * 0.4
                for a in range(n_a):
                    r = (i - 1) * n_a + a + 1
                    sentences = [sentence(rng, rng.randint(5, 14)) for _ in range(n_c)]
                    texts[r], rejected[r] = " ".join(sentences), 0
                    for k, text in enumerate(sentences):
                        claim_id += 1
                        copy.write_row((claim_id, r, k, text, f"Is it true that {text[:-1].lower()}?", "rule"))
                        p_yes = min(max(rng.gauss(0.3 if rng.random() < hallucination_rate else 0.8, 0.2), 0.0), 1.0)
                        p_no = round((1 - p_yes) * 0.95, 6)
                        rejected[r] += p_yes <= p_no
                        p_yes_of.append(p_yes)
        with cursor.copy(
            "COPY webapp_verdict (id, claim_id, labeler, p_yes, p_no, accepted, created_at) FROM STDIN"
        ) as copy:
            for claim, p_yes in enumerate(p_yes_of, 1):
                p_no = round((1 - p_yes) * 0.95, 6)
                copy.write_row((claim, claim, "bench-labeler", p_yes, p_no, p_yes > p_no, now))
        with cursor.copy(
            "COPY webapp_response (id, iteration_id, instruction_id, seed, text, status, error, score, "
            "created_at) FROM STDIN"
        ) as copy:
            for r, text in texts.items():
                copy.write_row((r, 1, (r - 1) // n_a + 1, (r - 1) % n_a, text, "labeled", "", -rejected[r], now))
                responses.append(ScoredResponse(r, (r - 1) // n_a + 1, text, rejected[r]))
        combined = combine_pairs(responses, k=2, seed=0)
        with cursor.copy(
            "COPY webapp_preferencepair (id, iteration_id, instruction_id, chosen_id, rejected_id, "
            "score_gap, excluded, created_at) FROM STDIN"
        ) as copy:
            for n, p in enumerate(combined.pairs, 1):
                copy.write_row((n, 1, p.instruction_id, p.chosen_id, p.rejected_id, p.score_gap, n % 50 == 0, now))
        # 1% of claims reviewed, agreeing with the labeler (so the cached scores stay right). The trigger that
        # keeps Response.reviewed is off for the COPY and its flags are set in one statement after: run per row
        # on a table without statistics, its plan read every review copied so far (the 10M fill's 100k reviews
        # had not finished in 25 minutes).
        columns = "claim_id, reviewer_id, decision, note, created_at, iteration_id"
        with transaction.atomic():
            cursor.execute("ALTER TABLE webapp_review DISABLE TRIGGER webapp_response_reviewed")
            with cursor.copy(f"COPY webapp_review ({columns}) FROM STDIN") as copy:
                for claim in rng.sample(range(1, claim_id + 1), claim_id // 100):
                    accepted = p_yes_of[claim - 1] > round((1 - p_yes_of[claim - 1]) * 0.95, 6)
                    decision = "correct" if accepted else "hallucinated"
                    copy.write_row((claim, rng.randint(1, args.reviewers), decision, "", now, 1))
            cursor.execute(
                "UPDATE webapp_response SET reviewed = TRUE WHERE id IN "
                "(SELECT c.response_id FROM webapp_claim c JOIN webapp_review r ON r.claim_id = c.id)"
            )
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the COPY's deferred key checks, before the ALTER
            cursor.execute("ALTER TABLE webapp_review ENABLE TRIGGER webapp_response_reviewed")
        cursor.execute(
            "UPDATE webapp_iteration SET metrics = %s WHERE id = 1", [f'{{"length_ratio": {combined.length_ratio}}}']
        )
        for table in (
            "auth_user",
            "auth_group",
            "webapp_iteration",
            "webapp_instruction",
            "webapp_response",
            "webapp_claim",
            "webapp_verdict",
            "webapp_preferencepair",
            "webapp_review",
        ):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))")
        cursor.execute("ANALYZE")
    from webapp.iterations import counts
    from webapp.models import Iteration

    counts.refresh(Iteration.objects.get(pk=1))  # COPY bypasses the writers that keep the dashboard's counts
    print(
        f"filled: {n_i} instructions, {len(responses)} answers, {claim_id} claims, {len(combined.pairs)} pairs, "
        f"r = {combined.length_ratio}",
        flush=True,
    )


# --- the server and its clients ------------------------------------------------------------------------------


def serve(args, env: dict) -> subprocess.Popen:
    """gunicorn on a free port of 127.0.0.1, started once the static files are collected."""
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    port = 18000 + secrets.randbelow(1000)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "webapp.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(args.workers),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    for _ in range(100):
        try:
            Client(port).request("GET", "/login/")
            server.port = port
            return server
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start")


class Client:
    """One reviewer's browser: a keep-alive connection and its cookies."""

    def __init__(self, port: int):
        self.port, self.cookies = port, {}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method: str, path: str, form: dict | None = None, htmx: bool = False):
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["X-CSRFToken"] = self.cookies.get("csrftoken", "")
        if htmx:
            headers["HX-Request"] = "true"
        try:
            self.conn.request(method, path, body=body, headers=headers)
            response = self.conn.getresponse()
        except (http.client.HTTPException, OSError):
            self.conn.close()  # a dropped keep-alive connection: open a new one and fail this request
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            raise
        content = response.read()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";")[0]
        return response.status, content

    def log_in(self, username: str) -> None:
        _, page = self.request("GET", "/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
        status, _ = self.request(
            "POST", "/login/", {"csrfmiddlewaretoken": token, "username": username, "password": PASSWORD}
        )
        if status != 302:
            raise SystemExit(f"login of {username} failed: {status}")


class Targets:
    """What the clients ask for: pages and overrides on random pairs of the iteration."""

    def __init__(self, args):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT chosen_id, rejected_id FROM webapp_preferencepair WHERE iteration_id = 1")
            self.pairs = cursor.fetchall()
            cursor.execute(
                "SELECT score_gap, id FROM webapp_preferencepair WHERE iteration_id = 1 "
                "ORDER BY score_gap DESC, id OFFSET %s LIMIT 1",
                [int(len(self.pairs) * 0.8)],
            )
            gap, pk = cursor.fetchone()
        self.claims = args.claims
        self.deep = f"/review/pairs/?iteration=1&after={gap}.{pk}"
        self.rng = random.Random(1)

    def path(self, endpoint: str) -> tuple[str, str, dict | None]:
        chosen, rejected = self.rng.choice(self.pairs)
        first_claim = (chosen - 1) * self.claims + 1  # claim ids follow answer ids in the fill
        return {
            "floor: login page": ("GET", "/login/", None),
            "list first page": ("GET", "/review/pairs/?iteration=1", None),
            "list deep page": ("GET", self.deep, None),
            "list filtered": ("GET", "/review/pairs/?iteration=1&reviewed=no&min_gap=2&source=coco&sort=gap", None),
            "pair page": ("GET", f"/review/1/pairs/{chosen}-{rejected}/", None),
            "spot-check queue": ("GET", "/review/1/spot-check/", None),
            "override": (
                "POST",
                f"/review/1/pairs/{chosen}-{rejected}/",
                {self.rng.choice(["correct", "hallucinated"]): first_claim + self.rng.randrange(self.claims)},
            ),
            "dashboard": ("GET", "/", None),
        }[endpoint]


ENDPOINTS = [
    "floor: login page",
    "list first page",
    "list deep page",
    "list filtered",
    "pair page",
    "spot-check queue",
    "override",
    "dashboard",
]
# (b): the endpoints, what a reviewer does most (read pairs, decide claims) most often.
MIX = {
    "pair page": 35,
    "override": 25,
    "spot-check queue": 20,
    "list first page": 10,
    "list deep page": 5,
    "list filtered": 5,
}


def timed(client: Client, method: str, path: str, form: dict | None) -> tuple[float, bool]:
    """Milliseconds for one request, and whether it succeeded (200)."""
    start = time.perf_counter()
    try:
        status, _ = client.request(method, path, form, htmx=form is not None)
        ok = status == 200
    except (http.client.HTTPException, OSError):
        ok = False
    return (time.perf_counter() - start) * 1000, ok


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def server_pids(server: subprocess.Popen, database: str) -> tuple[list[int], list[int]]:
    """The gunicorn workers' process ids, and those of the PostgreSQL backends connected to the bench database."""
    import psycopg

    with psycopg.connect(database, autocommit=True) as conn:
        backends = [
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server.pid:  # field 4, the parent: a gunicorn worker
            workers.append(int(stat.parent.name))
    return workers, backends


def cpu_seconds(pids) -> dict[int, float]:
    """CPU seconds each of these processes has used so far; gone ones are left out.

    Read from schedstat (nanoseconds on the CPU) rather than stat's utime + stime, which come in clock ticks
    (10 ms): a hundred login pages cost about 600 ms, so each process's reading could be off by 1-2 %.
    """
    used = {}
    for pid in pids:
        try:
            used[pid] = int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
        except OSError:
            continue
    return used


def one_client(client: Client, targets: Targets, n: int, server_processes, rounds: int = 10) -> dict:
    """Per endpoint: the latencies, the errors, and the server's CPU milliseconds per request, by part
    (the gunicorn workers, the PostgreSQL backends).

    The n requests of each endpoint are sent in `rounds` rounds that take the endpoints in turn (each round in
    a rotated order), so a slow minute of the machine falls on every page alike instead of on whichever page's
    block it met; the floor's figure, the divisor of every ratio, moved most that way.
    """
    for endpoint in ENDPOINTS:
        for _ in range(5):
            timed(client, *targets.path(endpoint))  # warm the workers' caches and connections
    times = {endpoint: [] for endpoint in ENDPOINTS}
    errors = dict.fromkeys(ENDPOINTS, 0)
    cpu = {endpoint: [0.0, 0.0] for endpoint in ENDPOINTS}
    per_round = [n // rounds + (r < n % rounds) for r in range(rounds)]
    for r, count in enumerate(per_round):
        parts = server_processes()
        order = ENDPOINTS[r % len(ENDPOINTS) :] + ENDPOINTS[: r % len(ENDPOINTS)]
        for endpoint in order:
            start = [cpu_seconds(pids) for pids in parts]
            for _ in range(count):
                ms, ok = timed(client, *targets.path(endpoint))
                times[endpoint].append(ms)
                errors[endpoint] += not ok
            for part, (pids, before) in enumerate(zip(parts, start, strict=True)):
                cpu[endpoint][part] += sum(t - before[pid] for pid, t in cpu_seconds(pids).items() if pid in before)
    return {
        endpoint: (times[endpoint], errors[endpoint], *(seconds * 1000 / n for seconds in cpu[endpoint]))
        for endpoint in ENDPOINTS
    }


def reviewers(clients: list[Client], targets: Targets, seconds: int) -> tuple[dict, int]:
    """Each client sends one request a second (at a random phase) for `seconds`."""
    records, lock = [], threading.Lock()
    names, weights = list(MIX), list(MIX.values())

    def work(client: Client, phase: float):
        rng = random.Random(phase)
        start = time.monotonic() + phase
        for tick in range(seconds):
            time.sleep(max(0.0, start + tick - time.monotonic()))
            endpoint = rng.choices(names, weights)[0]
            with lock:  # the targets' RNG is shared
                target = targets.path(endpoint)
            ms, ok = timed(client, *target)
            with lock:
                records.append((endpoint, ms, ok))

    threads = [threading.Thread(target=work, args=(c, i / len(clients))) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    by_endpoint = {}
    for endpoint, ms, ok in records:
        by_endpoint.setdefault(endpoint, ([], [0]))
        by_endpoint[endpoint][0].append(ms)
        by_endpoint[endpoint][1][0] += not ok
    return by_endpoint, len(records)


def plan_nodes(plan: dict):
    """The plan's nodes, depth first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def explain(targets: Targets) -> dict[str, tuple[float, list[str]]]:
    """Per endpoint, how PostgreSQL reads each table for the page's queries (EXPLAIN ANALYZE of every SELECT it
    ran): the index it scans, or a sequential scan with the rows it read; and the queries' total execution time.
    Run after the timed parts (an override here records a review)."""
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client as DjangoClient
    from django.test.utils import CaptureQueriesContext

    client = DjangoClient(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username="reviewer0"))
    plans = {}
    for endpoint in ENDPOINTS:
        method, path, form = targets.path(endpoint)
        with CaptureQueriesContext(connection) as queries:
            if method == "GET":
                client.get(path)
            else:
                client.post(path, form, HTTP_HX_REQUEST="true")
        reads, total = {}, 0.0
        for query in queries.captured_queries:
            if not query["sql"].startswith("SELECT") or "django_session" in query["sql"]:
                continue
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query["sql"])
                value = cursor.fetchone()[0]
            (plan,) = json.loads(value) if isinstance(value, str) else value
            total += plan["Execution Time"]
            for node in plan_nodes(plan["Plan"]):
                loops = node.get("Actual Loops", 1)
                if node.get("Index Name"):
                    reads[node["Index Name"]] = reads.get(node["Index Name"], 0) + node["Actual Rows"] * loops
                elif node.get("Relation Name"):
                    read = (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * loops
                    name = f"{node['Node Type'].lower()} {node['Relation Name']}"
                    reads[name] = reads.get(name, 0) + read
        plans[endpoint] = (total, [f"{name} ({rows:.0f})" for name, rows in reads.items()])
    return plans


def filled_database(args, prefix: str) -> dict:
    """The served environment (in this process too, Django set up) over a migrated database, filled unless it
    holds claims already (--keep); returns the environment."""
    env = served_environment(args.database_url, tempfile.mkdtemp(prefix=prefix))
    os.environ.update(env)
    import django

    migrated_database(args.database_url, env, keep=args.keep)
    django.setup()
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM webapp_claim")
        filled = cursor.fetchone()[0]
    if not filled:
        start = time.perf_counter()
        with transaction.atomic():  # foreign keys are checked at commit, so tables fill in any order
            fill(args)
        vacuum()
        print(f"fill took {time.perf_counter() - start:.0f} s", flush=True)
    return env


def main():
    args = make_parser().parse_args()
    env = filled_database(args, "bench-web-")
    from django.db import connection

    targets = Targets(args)
    connection.close()
    server = serve(args, env)
    try:
        clients = [Client(server.port) for _ in range(args.reviewers)]
        for n, client in enumerate(clients):
            client.log_in(f"reviewer{n}")
        single = one_client(clients[0], targets, args.requests, lambda: server_pids(server, args.database_url))
        many, total = reviewers(clients, targets, args.seconds)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    plans = explain(targets)

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM webapp_claim")
        claims = cursor.fetchone()[0]
    print(f"\n(a) one client, {args.requests} requests per endpoint, {claims} claims, gunicorn -w {args.workers}:")
    for endpoint, (times, errors, app_ms, database_ms) in single.items():
        print(
            f"  {endpoint:18s} p50 {statistics.median(times):6.1f} ms   p95 {percentile(times, 95):6.1f} ms"
            f"   server CPU {app_ms + database_ms:5.1f} ms/request (gunicorn {app_ms:4.1f}, PostgreSQL"
            f" {database_ms:4.1f})   errors {errors}"
        )
    print("plans (EXPLAIN ANALYZE of each SELECT a request runs: its SQL time, each index or sequential scan and the")
    print("rows it returned or read):")
    for endpoint, (ms, reads) in plans.items():
        print(f"  {endpoint:18s} {ms:5.1f} ms: {', '.join(reads) or '-'}")
    all_times = [ms for times, _ in many.values() for ms in times]
    errors = sum(e[0] for _, e in many.values())
    print(f"(b) {args.reviewers} reviewers x 1 request/s for {args.seconds} s: {total} requests")
    for endpoint, (times, e) in sorted(many.items()):
        print(
            f"  {endpoint:18s} p50 {statistics.median(times):6.1f} ms   p95 {percentile(times, 95):6.1f} ms"
            f"   n {len(times)}   errors {e[0]}"
        )
    print(
        f"  all                p50 {statistics.median(all_times):6.1f} ms   p95 {percentile(all_times, 95):6.1f} ms"
        f"   max {max(all_times):6.1f} ms   errors {errors}"
    )
    single_p95 = max(percentile(single[endpoint][0], 95) for endpoint in MIX)
    server_ms = {endpoint: app_ms + database_ms for endpoint, (_, _, app_ms, database_ms) in single.items()}
    mix_cpu = sum(server_ms[e] * w for e, w in MIX.items()) / sum(MIX.values())
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end (other work included)")
    needs = args.reviewers * mix_cpu / 1000
    print(f"server CPU per request of the (b) mix: {mix_cpu:.1f} ms, so (b) needs {needs:.2f} CPUs")
    print(f"dashboard_p95_ms: {percentile(single['dashboard'][0], 95):.1f} (target < 50 at 1M claims, < 100 at 10M)")
    print(f"single_client_p95_ms (worst target endpoint): {single_p95:.1f} (target < 50)")
    print(f"reviewers_p95_ms: {percentile(all_times, 95):.1f} (target < 100)")
    print(f"reviewers_errors: {errors} (target 0)")
    floor = server_ms["floor: login page"]
    ratios = {e: server_ms[e] / floor for e in ENDPOINTS if e != "floor: login page"}
    worst = max(ratios, key=ratios.get)
    print("server CPU per request against the login page's: " + ", ".join(f"{e} {r:.2f}x" for e, r in ratios.items()))
    print(f"worst_page_cpu_ratio: {ratios[worst]:.2f} ({worst}; target <= 2 at 1M claims, <= 3 at 10M)")


if __name__ == "__main__":
    main()
