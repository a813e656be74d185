"""Can a reviewer's search take the site down? The pair list's worst searches against a loaded iteration, while
another client loads the login page.

Usage:
    .venv/bin/python bench/abuse.py [--instructions 50000] [--answers 4] [--claims 2] [--searchers 12]
        [--seconds 30] [--workers 3] [--database-url postgres://postgres@127.0.0.1:5432/rlaifv_abuse] [--keep]

Fills a fresh PostgreSQL database as bench/web.py does (one iteration at its review gate; at the defaults 200k
answers of bench/web.py's 20 common words and about 100k pairs), serves it with gunicorn (DEBUG off) and logs in
--searchers reviewers. Each sends, one after another for --seconds, the searches that took 34–46 s apiece before
the search was bounded (webapp/review/search.py): negations of common words, phrases of them, long queries,
unicode. Meanwhile one client loads the login page every 0.2 s. Prints each search's statuses and times, then
`abuse_login_p95_ms` (target < 200) and `abuse_search_max_s` (target < 2, or refused).
"""

import collections
import os
import signal
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The checkout's root is on the path first, so these import the project's modules.
from bench.web import Client, filled_database, make_parser, percentile, serve  # noqa: E402

# "the" and "a" are stop words of the English search configuration; the other words are in most answers.
WORST = [
    "-the",  # only a negation: every answer
    "-cat",
    '"the the"',  # a phrase of the commonest word
    '"cat cat"',  # a phrase whose words are in most answers: every one must be read again to check the order
    '"dog cat red"',
    "the -cat",
    '"red cat" -dog -sofa',
    "the a cat dog red blue table sofa",  # every word common
    "ünïcödé " * 20,
    "the " * 50,
    "a" * 200,
    "cat",
]


def main() -> None:
    parser = make_parser()
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--searchers", type=int, default=12)
    parser.set_defaults(
        instructions=50_000, claims=2, workers=3, database_url="postgres://postgres@127.0.0.1:5432/rlaifv_abuse"
    )
    args = parser.parse_args()
    args.reviewers = args.searchers
    env = filled_database(args, "bench-abuse-")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM webapp_preferencepair")
        pairs = cursor.fetchone()[0]
    connection.close()
    server = serve(args, env)
    searches = collections.defaultdict(list)  # query → [(seconds, status)]
    logins = []
    stop = time.monotonic() + args.seconds

    def search(client: Client, offset: int):
        n = offset
        while time.monotonic() < stop:
            query = WORST[n % len(WORST)]
            started = time.perf_counter()
            try:
                status, _ = client.request("GET", "/review/pairs/?" + urlencode({"iteration": 1, "q": query}))
            except OSError:
                status = "error"
            searches[query].append((time.perf_counter() - started, status))
            n += 1

    def login_page():
        client = Client(server.port)
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                status, _ = client.request("GET", "/login/")
            except OSError:
                status = "error"
            logins.append(((time.perf_counter() - started) * 1000, status))
            time.sleep(0.2)

    try:
        clients = [Client(server.port) for _ in range(args.searchers)]
        for n, client in enumerate(clients):
            client.log_in(f"reviewer{n}")
        threads = [threading.Thread(target=search, args=(c, n)) for n, c in enumerate(clients)]
        threads.append(threading.Thread(target=login_page))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)

    print(f"\n{pairs} pairs, {args.searchers} searchers for {args.seconds} s, gunicorn -w {args.workers}:")
    for query, results in searches.items():
        statuses = collections.Counter(status for _, status in results)
        times = [seconds for seconds, _ in results]
        shown = query if len(query) <= 40 else query[:37] + "..."
        print(f"  {shown!r:44} n {len(results):4d}  max {max(times):6.2f} s  statuses {dict(statuses)}")
    login_times = [ms for ms, _ in logins]
    login_errors = sum(status != 200 for _, status in logins)
    print(f"login page: {len(logins)} loads, {login_errors} not 200")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"abuse_login_p95_ms: {percentile(login_times, 95):.1f} (target < 200)")
    slowest = max(seconds for results in searches.values() for seconds, _ in results)
    print(f"abuse_search_max_s: {slowest:.2f} (target < 2, or refused)")


if __name__ == "__main__":
    main()
