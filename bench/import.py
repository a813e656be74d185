"""Imports at 100k rows: instructions from JSONL and an RLAIF-V parquet, every check kept, all or nothing.

Usage:
    .venv/bin/python bench/import.py [--rows 100000] [--images 2000] [--repeats 1]
        [--database-url postgres://postgres@127.0.0.1:5432/rlaifv_scale_import]

Writes --rows JSONL lines whose images (--images JPEGs of 256×256, bench/export.py's) are shared among them as
real datasets share them (many questions per picture), and an RLAIF-V parquet of --rows rows (each a question,
its embedded image, a chosen and a rejected answer). Each import runs `manage.py import_instructions` or
`manage.py import_rlaifv` in a fresh process on an empty database (dropped and migrated before each run), and is
timed from the command's start to its end. Then the same JSONL with a bad last line: the import must fail naming
that line and leave the database empty (all or nothing).
Prints the figures last: import_100k_s (the JSONL, target < 30 s) and import_rlaifv_100k_s.
"""

import argparse
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

from bench.export import jpeg  # noqa: E402
from bench.web import SOURCES, WORDS, migrated_database, sentence, served_environment  # noqa: E402


def make_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=2_000, help="distinct images shared by the rows")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each import")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/rlaifv_scale_import")
    return parser


def write_inputs(folder: Path, rows: int, n_images: int) -> tuple[Path, Path, Path]:
    """The JSONL and its images folder, the same JSONL with a bad last line, and the RLAIF-V parquet."""
    from labeling.formats import RlaifvRecord, write_rlaifv

    rng = random.Random(0)
    images = folder / "images"
    images.mkdir()
    pictures = [jpeg(rng) for _ in range(n_images)]
    for k, data in enumerate(pictures):
        (images / f"{k:05d}.jpg").write_bytes(data)
    lines = [
        json.dumps(
            {
                "image": f"{n % n_images:05d}.jpg",
                "question": f"Question {n}: what is {' '.join(rng.choice(WORDS) for _ in range(4))}?",
                "source": SOURCES[n % len(SOURCES)],
                "split": "heldout" if n % 20 == 0 else "train",
            }
        )
        for n in range(rows)
    ]
    good = folder / "instructions.jsonl"
    good.write_text("\n".join(lines) + "\n")
    bad = folder / "bad.jsonl"
    bad.write_text("\n".join(lines[:-1] + ['{"image": "00000.jpg", "question": 42}']) + "\n")
    records = (
        RlaifvRecord(
            image=pictures[n % n_images],
            question=f"Question {n}: describe the picture.",
            chosen=sentence(rng, 12),
            rejected=sentence(rng, 12),
            image_path=f"{n % n_images:05d}.jpg",
            ds_name="bench",
            origin_dataset=SOURCES[n % len(SOURCES)],
            idx=str(n),
        )
        for n in range(rows)
    )
    parquet = folder / "rlaifv.parquet"
    write_rlaifv(records, parquet)
    return good, bad, parquet


def timed(env: dict, command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, result


def count(database_url: str, table: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def main():
    args = make_parser().parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-import-"))
    env = served_environment(args.database_url, folder / "var") | {"MEDIA_ROOT": str(folder / "media")}
    start = time.perf_counter()
    good, bad, parquet = write_inputs(folder, args.rows, args.images)
    size = sum(f.stat().st_size for f in (folder / "images").iterdir()) / 2**20
    print(
        f"inputs written in {time.perf_counter() - start:.0f} s: {args.rows} lines over {args.images} images "
        f"({size:.0f} MiB), RLAIF-V parquet {parquet.stat().st_size / 2**20:.0f} MiB",
        flush=True,
    )

    jsonl, rlaifv = [], []
    for _ in range(args.repeats):
        migrated_database(args.database_url, env)
        seconds, result = timed(env, ["import_instructions", str(good), "--images", str(folder / "images")])
        if result.returncode:
            raise SystemExit(result.stderr[-3000:])
        assert count(args.database_url, "webapp_instruction") == args.rows
        jsonl.append(seconds)
        print(f"  jsonl  {seconds:6.1f} s   {result.stdout.strip()}", flush=True)
        again, result = timed(env, ["import_instructions", str(good), "--images", str(folder / "images")])
        print(f"  jsonl again {again:6.1f} s   {result.stdout.strip()}", flush=True)

        migrated_database(args.database_url, env)
        seconds, result = timed(env, ["import_rlaifv", str(parquet)])
        if result.returncode:
            raise SystemExit(result.stderr[-3000:])
        rlaifv.append(seconds)
        pairs = count(args.database_url, "webapp_preferencepair")
        print(f"  rlaifv {seconds:6.1f} s   {result.stdout.strip()} ({pairs} pairs stored)", flush=True)

    migrated_database(args.database_url, env)
    seconds, result = timed(env, ["import_instructions", str(bad), "--images", str(folder / "images")])
    left = count(args.database_url, "webapp_instruction")
    refused = result.returncode != 0 and f"line {args.rows}:" in result.stderr
    print(f"  a bad last line: refused in {seconds:.1f} s: {result.stderr.strip().splitlines()[-1]}")
    print(f"  instructions left after it: {left}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other work included)")
    print(f"all_or_nothing: {'ok' if refused and left == 0 else 'FAIL'}")
    print(f"import_100k_s: {statistics.median(jsonl):.1f} (JSONL, {args.rows} lines; target < 30) "
          f"runs {', '.join(f'{s:.1f}' for s in jsonl)}")  # fmt: skip
    print(f"import_rlaifv_100k_s: {statistics.median(rlaifv):.1f} ({args.rows} rows) "
          f"runs {', '.join(f'{s:.1f}' for s in rlaifv)}")  # fmt: skip


if __name__ == "__main__":
    main()
