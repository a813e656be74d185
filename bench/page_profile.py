"""Where each review page spends the app's CPU: cProfile of requests served in this process.

Usage:
    .venv/bin/python bench/page_profile.py [--requests 100] [--top 12] [--endpoint "spot-check queue"]
        [--instructions 25000 --answers 4 --claims 10] [--database-url ...] [--keep]

Fills (or with --keep re-uses) bench/web.py's database, logs a reviewer in through Django's test client (the
whole middleware chain, DEBUG off) and requests each page as bench/web.py's one client does. Per page it prints
the app's CPU per request (process time, without the profiler, then with it) split by where the time is spent
(the template engine, the ORM and the database driver, the request and middleware machinery, the project's own
code, the rest), and the functions that spend the most of it themselves. gunicorn's share and PostgreSQL's are
not in these figures: bench/web.py measures the whole server.
"""

import cProfile
import pstats
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # run as a script, sys.path[0] is bench/

from bench.web import ENDPOINTS, PASSWORD, Targets, filled_database, make_parser  # noqa: E402

# Where a function lives, by its file's path: the first part that matches names its share.
SHARES = [
    ("template", ("django/template/", "template_partials/", "django/templatetags/")),
    ("ORM and driver", ("django/db/", "psycopg/", "psycopg_pool/")),
    ("request and middleware", ("django/", "django_htmx/", "csp/", "whitenoise/")),
    ("project", (str(ROOT / "webapp"), str(ROOT / "labeling"))),
]
OTHER = "other (stdlib and builtins called from there)"


def share_of(filename: str) -> str:
    for share, parts in SHARES:
        if any(part in filename for part in parts):
            return share
    return OTHER


def attributed_shares(stats: dict) -> Counter:
    """Seconds spent in each share. A builtin's or the standard library's own time counts to the share of
    whoever called it (an `isinstance` in the template engine is the template's), in proportion to its calls."""
    shares = Counter()
    for (filename, _, _), (_, _, own, _, callers) in stats.items():
        share = share_of(filename)
        if share != OTHER or not callers:
            shares[share] += own
            continue
        from_callers = sum(caller[2] for caller in callers.values()) or 1.0
        for (caller_file, _, _), caller in callers.items():
            shares[share_of(caller_file)] += own * caller[2] / from_callers
    return shares


def serve(client, targets, endpoint: str, n: int) -> None:
    for _ in range(n):
        method, path, form = targets.path(endpoint)
        headers = {}
        if form is not None:  # an HTMX post, its CSRF token checked as a browser's is
            headers = {"HTTP_HX_REQUEST": "true", "HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value}
        response = client.post(path, form, **headers) if method == "POST" else client.get(path)
        if response.status_code != 200:
            raise SystemExit(f"{endpoint}: {method} {path} answered {response.status_code}")


def main():
    parser = make_parser()
    parser.add_argument("--top", type=int, default=12, help="functions to list per page")
    parser.add_argument("--endpoint", action="append", choices=ENDPOINTS, help="only these pages (repeatable)")
    args = parser.parse_args()
    env = filled_database(args, "bench-profile-")
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    from django.test import Client

    client = Client(enforce_csrf_checks=True, HTTP_HOST="127.0.0.1")
    page = client.get("/login/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    login = {"csrfmiddlewaretoken": token, "username": "reviewer0", "password": PASSWORD}
    if client.post("/login/", login).status_code != 302:
        raise SystemExit("reviewer0 could not log in: is the database bench/web.py's?")
    targets = Targets(args)
    print(f"{args.requests} requests per page, app CPU only (no gunicorn, no PostgreSQL)")
    for endpoint in args.endpoint or ENDPOINTS:
        serve(client, targets, endpoint, 10)  # warm caches and the connection
        began = time.process_time()
        serve(client, targets, endpoint, args.requests)
        plain_ms = (time.process_time() - began) * 1000 / args.requests
        profile = cProfile.Profile(time.process_time)
        profile.runcall(serve, client, targets, endpoint, args.requests)
        stats = pstats.Stats(profile)
        shares = attributed_shares(stats.stats)
        total = sum(shares.values())
        print(f"\n{endpoint}: {plain_ms:.1f} ms a request ({total * 1000 / args.requests:.1f} ms profiled)")
        print("  " + ", ".join(f"{share} {seconds / total:.0%}" for share, seconds in shares.most_common()))
        own_time = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[: args.top]
        for (filename, line, name), (_, calls, own, cumulative, _) in own_time:
            where = filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
            print(
                f"  {own * 1000 / args.requests:6.2f} ms own {cumulative * 1000 / args.requests:6.2f} ms cum"
                f"  {calls / args.requests:6.1f} calls  {name} ({where}:{line})"
            )


if __name__ == "__main__":
    main()
