"""Exports at 100k pairs: every format, by the command and by the browser's download, time and peak memory.

Usage:
    .venv/bin/python bench/export.py [--pairs 100000] [--small 10000] [--images 2000] [--repeats 1]
        [--database-url postgres://postgres@127.0.0.1:5432/rlaifv_scale_export] [--keep]

Fills PostgreSQL with bench/web.py's fill (one iteration at its review gate; 4 answers of 4 claims per
instruction, about 1.8 pairs each) and gives the instructions --images real JPEGs (256×256, stored as the
importers store them), shared among them as real datasets share images. Then exports the first --small pairs and
all --pairs of them (the others marked excluded, which an export leaves out) in each format, each export in a
fresh process: `manage.py export_pairs` (the command and library path: trl parquet, a trl `datasets` folder,
rlaifv, jsonl) and the streamed download a staff member's browser gets (trl, rlaifv, jsonl as a zip), read
to the end and thrown away. Each prints its seconds, bytes and peak RSS (the process's maximum resident set,
Django and pyarrow included): memory that does not grow from --small to --pairs shows that pairs are read a
chunk at a time through a server-side cursor and rows written as they come.
A trl `datasets` folder is written through an arrow file that `datasets` maps into memory, whose pages count
in the RSS though the kernel can drop them at will: its anonymous memory (RSS less mapped files) is printed too.
Prints the figures last: export_100k_s (trl parquet by the command, target < 15 s), export_peak_rss_mb_10k and
export_peak_rss_mb_100k (the largest peak RSS of the streamed exports, every format and path but the folder).
"""

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # run as a script, sys.path[0] is bench/

from bench.web import fill, migrated_database, served_environment  # noqa: E402

# One export in a fresh process: its time from the first query to the last byte, its size and its peak memory.
EXPORT = """
import json, resource, shutil, sys, threading, time
from pathlib import Path
import django
django.setup()
peak_anon = 0
def sample():  # the peak of anonymous memory: RSS less the pages of files mapped in (the datasets folder's arrow)
    global peak_anon
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak_anon = max(peak_anon, int(line.split()[1]) / 1024)
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
path, fmt, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
start = time.perf_counter()
if path == "command":
    call_command("export_pairs", "--iteration", "1", "--format", fmt, "--out", str(out), stdout=open("/dev/null", "w"))
    size = sum(f.stat().st_size for f in ([out] if out.is_file() else out.rglob("*")) if f.is_file())
else:
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username="bench-staff"))
    response = client.get(f"/iterations/1/export/{fmt}/")
    assert response.status_code == 200, response.status_code
    size = sum(len(piece) for piece in response.streaming_content)
seconds, peak = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "bytes": size, "peak_rss_mb": peak, "peak_anon_mb": peak_anon}))
"""

RUNS = [  # (path, format, output name)
    ("command", "trl", "pairs.parquet"),
    ("command", "trl", "dataset"),
    ("command", "rlaifv", "rlaifv.parquet"),
    ("command", "jsonl", "jsonl/pairs.jsonl"),
    ("download", "trl", "-"),
    ("download", "rlaifv", "-"),
    ("download", "jsonl", "-"),
]


def make_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000, help="the smaller export, to compare memory with")
    parser.add_argument("--images", type=int, default=2_000, help="distinct images shared by the instructions")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each export (the data filled once)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/rlaifv_scale_export")
    parser.add_argument("--keep", action="store_true", help="re-use the database and images when already filled")
    return parser


def jpeg(rng: random.Random) -> bytes:
    """A 256×256 photo-like JPEG: a few coloured shapes on a noisy gradient (about 10 kB)."""
    from PIL import Image, ImageDraw

    image = Image.linear_gradient("L").resize((256, 256)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(200), rng.randrange(200)
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x, y, x + rng.randrange(20, 80), y + rng.randrange(20, 80)), fill=colour)
    noise = Image.effect_noise((256, 256), 24).convert("RGB")
    buffer = io.BytesIO()
    Image.blend(image, noise, 0.15).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def give_images(n: int) -> None:
    """Store n JPEGs as the importers do and point instruction i at image i mod n."""
    from django.contrib.auth.models import User
    from django.db import connection

    from webapp.transfer.images import store_image, validate_image

    rng = random.Random(0)
    images = [validate_image(jpeg(rng)) for _ in range(n)]
    for image in images:
        store_image(image)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE bench_image (n int, name text, sha text)")
        with cursor.copy("COPY bench_image (n, name, sha) FROM STDIN") as copy:
            for k, image in enumerate(images):
                copy.write_row((k, image.name, image.sha256))
        cursor.execute(
            "UPDATE webapp_instruction i SET image = b.name, image_sha256 = b.sha, width = 256, height = 256 "
            "FROM bench_image b WHERE b.n = i.id %% %s",
            [n],
        )
    User.objects.create_user("bench-staff", password="bench staff password", is_staff=True, is_superuser=True)
    size = sum(len(image.data) for image in images) / n / 1024
    print(f"images: {n} JPEGs of 256×256, {size:.1f} kB each on average", flush=True)


def keep_first(n: int) -> int:
    """Leave the first n pairs in the export (the others excluded); returns how many there are."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE webapp_preferencepair SET excluded = id NOT IN "
            "(SELECT id FROM webapp_preferencepair ORDER BY id LIMIT %s)",
            [n],
        )
        cursor.execute("SELECT COUNT(*) FROM webapp_preferencepair WHERE NOT excluded")
        return cursor.fetchone()[0]


def export_once(env: dict, path: str, fmt: str, name: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        out = Path(tmp) / name
        out.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [sys.executable, "-c", EXPORT, path, fmt, str(out)], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if result.returncode:
            raise SystemExit(f"{path} {fmt} failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    args = make_parser().parse_args()
    var = Path(tempfile.gettempdir()) / "bench-export-var"
    env = served_environment(args.database_url, var) | {"MEDIA_ROOT": str(var / "media")}
    os.environ.update(env)
    import django

    migrated_database(args.database_url, env, keep=args.keep)
    django.setup()
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM webapp_preferencepair")
        filled = cursor.fetchone()[0]
    if filled < args.pairs:
        if filled:  # kept, but too small: start again
            connection.close()
            migrated_database(args.database_url, env)
        instructions = args.pairs * 56 // 100  # about 1.8 pairs per instruction of 4 answers
        fill_args = argparse.Namespace(instructions=instructions, answers=4, claims=4, reviewers=2)
        start = time.perf_counter()
        with transaction.atomic():
            fill(fill_args)
            give_images(args.images)
        print(f"fill took {time.perf_counter() - start:.0f} s", flush=True)

    results = {}
    for size in (args.small, args.pairs):
        with transaction.atomic():
            kept = keep_first(size)
        connection.close()
        print(f"\n{kept} pairs:", flush=True)
        for path, fmt, name in RUNS:
            runs = [export_once(env, path, fmt, name) for _ in range(args.repeats)]
            results[size, path, fmt, name] = runs
            seconds = [r["seconds"] for r in runs]
            print(
                f"  {path:8s} {fmt:6s} {name:17s} {statistics.median(seconds):6.1f} s "
                f"(runs {', '.join(f'{s:.1f}' for s in seconds)})   {runs[0]['bytes'] / 2**20:7.1f} MiB   "
                f"peak RSS {max(r['peak_rss_mb'] for r in runs):5.0f} MB, anonymous "
                f"{max(r['peak_anon_mb'] for r in runs):5.0f} MB",
                flush=True,
            )

    def peak(size, key="peak_rss_mb"):
        return max(r[key] for (s, _, _, name), runs in results.items() if s == size and name != "dataset" for r in runs)

    trl = [r["seconds"] for r in results[args.pairs, "command", "trl", "pairs.parquet"]]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work included)")
    print(f"export_100k_s: {statistics.median(trl):.1f} (trl parquet by the command, {args.pairs} pairs; target < 15)")
    anon = max(r["peak_anon_mb"] for runs in results.values() for r in runs)
    print(f"peak anonymous memory of any export, the datasets folder's included: {anon:.0f} MB")
    print(f"export_peak_rss_mb_10k: {peak(args.small):.0f} (the largest of the streamed exports at {args.small})")
    print(f"export_peak_rss_mb_100k: {peak(args.pairs):.0f} (the same at {args.pairs})")


if __name__ == "__main__":
    main()
