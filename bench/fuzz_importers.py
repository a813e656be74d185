"""Fuzz the importers: every malformed input must end in a clean error and leave nothing behind.

Usage:
    .venv/bin/python bench/fuzz_importers.py [--cases 1500] [--database-url URL]

Hypothesis generates JSONL files (garbage lines, wrong types, huge strings, missing / truncated / bomb /
non-image files, paths leaving the folder) for `import_instructions`, and parquet files (wrong column types,
missing columns, bad image bytes, truncated or non-parquet files) for `import_rlaifv`. After each case the
database row counts and stored files must be unchanged when the import failed, and consistent when it
succeeded. Prints the counts last: `unexpected_errors` and `partial_writes` must be 0.
"""

import argparse
import io
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def image_bytes(kind: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    if kind == "bomb":
        Image.new("1", (12_000, 12_000)).save(buffer, format="PNG")
        return buffer.getvalue()
    Image.effect_noise((48, 32), 40).convert("RGB").save(buffer, format="PNG")
    data = buffer.getvalue()
    return {"good": data, "truncated": data[: len(data) // 2], "text": b"not an image at all", "empty": b""}[kind]


IMAGE_KINDS = ["good", "truncated", "bomb", "text", "empty"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1500, help="cases per importer")
    parser.add_argument("--database-url")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="fuzz-")
    os.environ.update(
        VAR_DIR=tmp, DJANGO_SETTINGS_MODULE="webapp.settings", DEBUG="1",
        DATABASE_URL=args.database_url or f"sqlite:///{tmp}/fuzz.sqlite3", CELERY_BROKER_URL="filesystem://localhost/",
    )  # fmt: skip
    if args.database_url and args.database_url.startswith("postgres"):
        from bench.pipeline import fresh_postgres

        fresh_postgres(args.database_url)
    import django

    django.setup()
    import pyarrow as pa
    import pyarrow.parquet as pq
    from django.conf import settings
    from django.core.management import call_command
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    from webapp.models import Instruction, Iteration, PreferencePair, Response
    from webapp.transfer.importing import ImportFailed, import_instructions, read_jsonl
    from webapp.transfer.rlaifv_import import RlaifvImportFailed, import_rlaifv

    call_command("migrate", verbosity=0)
    images = Path(tmp) / "images"
    images.mkdir()
    for kind in IMAGE_KINDS:
        (images / f"{kind}.png").write_bytes(image_bytes(kind))
    outcomes: Counter = Counter()

    def state():
        files = sorted(p.name for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file())
        counts = tuple(m.objects.count() for m in (Instruction, Iteration, Response, PreferencePair))
        return counts, files

    def check(name: str, run, expected_errors) -> None:
        before = state()
        try:
            run()
        except expected_errors:
            outcomes[f"{name}_clean_errors"] += 1
            if state() != before:
                outcomes["partial_writes"] += 1
        except Exception as exc:  # anything else is a bug the fuzzer found
            outcomes["unexpected_errors"] += 1
            print(f"{name}: unexpected {type(exc).__name__}: {exc}"[:300], file=sys.stderr)
        else:
            outcomes[f"{name}_imported"] += 1
            stored = {Path(n).name for n in Instruction.objects.values_list("image", flat=True)}
            if set(state()[1]) != stored:
                outcomes["partial_writes"] += 1

    huge = st.text(min_size=1, max_size=20).map(lambda s: s * (200_000 // len(s)))  # ~200k characters
    texts = st.one_of(st.text(max_size=50), huge, st.sampled_from(["", "   ", "Q?", "<script>alert(1)</script>"]))
    values = st.one_of(
        texts, st.integers(), st.floats(allow_nan=True), st.none(), st.booleans(),
        st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    )  # fmt: skip
    names = st.one_of(st.sampled_from([f"{k}.png" for k in IMAGE_KINDS] + ["missing.png", "../fuzz.sqlite3",
                                       "/etc/passwd", "", "images"]), values)  # fmt: skip
    record = st.fixed_dictionaries(
        {},
        optional={"image": names, "question": values, "source": values, "split": st.one_of(values, st.just("heldout"))},
    )
    good = st.builds(lambda q: {"image": "good.png", "question": q or "Q?", "source": "fuzz"}, st.text(max_size=30))
    line = st.one_of(
        good.map(json.dumps), good.map(json.dumps), record.map(json.dumps),
        st.binary(max_size=40).map(lambda b: b.decode("latin-1")), st.sampled_from(["{", "[]", "null", '"x"', "{}"]),
    )  # fmt: skip
    jsonl = st.lists(line, min_size=0, max_size=5).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))

    fuzz = hsettings(max_examples=args.cases, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))  # fmt: skip

    @fuzz
    @given(jsonl, st.booleans())
    def jsonl_case(data, bad_utf8):
        path = Path(tmp) / "case.jsonl"
        path.write_bytes((b"\xff\xfe" if bad_utf8 else b"") + data)
        check("jsonl", lambda: import_instructions(read_jsonl(path), images), ImportFailed)

    image_cell = st.one_of(
        st.sampled_from(IMAGE_KINDS).map(lambda k: {"bytes": image_bytes(k) if k != "bomb" else BOMB, "path": "x.png"}),
        st.none(), st.just({"bytes": None, "path": "p"}),
    )  # fmt: skip
    column = {
        "image": st.one_of(image_cell, st.binary(max_size=20)),
        "question": values, "chosen": values, "rejected": values, "idx": values, "ds_name": values,
    }  # fmt: skip

    def table_bytes(rows: list[dict]) -> bytes:
        """A parquet file of the rows; columns pyarrow cannot type or write become JSON text columns."""
        columns = {key: [row.get(key) for row in rows] for row in rows for key in row}
        sink = io.BytesIO()
        try:
            pq.write_table(pa.table({k: pa.array(v) for k, v in columns.items()}), sink)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            sink = io.BytesIO()
            as_text = {k: pa.array([json.dumps(x, default=str) for x in v]) for k, v in columns.items()}
            pq.write_table(pa.table(as_text), sink)
        return sink.getvalue()

    good_row = st.builds(
        lambda q, c: {"image": {"bytes": GOOD, "path": "g.png"}, "question": q or "Q?", "chosen": c or "yes",
                      "rejected": (c or "yes") + " no"},
        st.text(max_size=30), st.text(max_size=30),
    )  # fmt: skip
    parquet = st.one_of(
        st.lists(good_row, min_size=1, max_size=3).map(table_bytes),
        st.lists(st.one_of(good_row, st.fixed_dictionaries({}, optional=column)), min_size=1, max_size=4).map(
            table_bytes
        ),
        st.lists(st.fixed_dictionaries({}, optional=column), min_size=1, max_size=4).map(table_bytes),
        st.binary(max_size=200),
        st.lists(st.fixed_dictionaries({}, optional=column), min_size=1, max_size=3)
        .map(table_bytes).map(lambda b: b[: len(b) * 2 // 3]),
    )  # fmt: skip

    @fuzz
    @given(parquet)
    def parquet_case(data):
        path = Path(tmp) / "case.parquet"
        path.write_bytes(data)
        check("parquet", lambda: import_rlaifv(path), RlaifvImportFailed)

    BOMB, GOOD = image_bytes("bomb"), image_bytes("good")
    jsonl_case()
    parquet_case()
    total = sum(v for k, v in outcomes.items() if k != "partial_writes")
    for key in sorted(outcomes):
        print(f"{key}: {outcomes[key]}")
    print(f"cases: {total}  unexpected_errors: {outcomes['unexpected_errors']}  "
          f"partial_writes: {outcomes['partial_writes']}")  # fmt: skip


if __name__ == "__main__":
    main()
