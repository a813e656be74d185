"""File formats for preference data: TRL vision-preference rows and the RLAIF-V dataset's parquet layout.

Pure Python (datasets, pyarrow, Pillow), so training jobs and scripts use it without the web app.

TRL rows are what TRL 1.16's `DPOTrainer` reads for vision data (`DataCollatorForVisionPreference`):
`images` (a list holding the one image), and `prompt` / `chosen` / `rejected` as chat messages whose content
is a plain string. TRL inserts the image placeholder before the first user message itself
(`prepare_multimodal_messages`), so the rows stay model-agnostic. Three ways to write them:
- `write_trl_dataset`: a `datasets` dataset folder (`save_to_disk`), images embedded; `load_from_disk` reads it.
- `write_trl_parquet`: one parquet file, images embedded; `Dataset.from_parquet` or `load_dataset` reads it.
- `write_trl_jsonl`: one JSON object a line whose `images` are paths relative to the JSONL's folder; the image
  files are written there under each record's `image_path`. `load_trl_jsonl` reads it back as a dataset.
The parquet files can also be produced piece by piece (`trl_parquet_chunks`, `rlaifv_chunks`), for a download
that streams: the bytes are those the `write_` functions write, one small batch of rows in memory at a time.

The RLAIF-V layout (openbmb/RLAIF-V-Dataset) is one row per pair: `ds_name`, `image` (struct {bytes, path}),
`question`, `chosen`, `rejected`, `origin_dataset`, `origin_split` (JSON text: the models behind the pair),
`idx`, `image_path`, all strings but the image. `read_rlaifv` checks the schema, then every row, and names the
column and the row (0-based, as pandas and `datasets` index it) of the first problem. Only `image` and
`question` are required; `chosen` and `rejected` come together or not at all (rows without them are bare
instructions); missing optional columns read as "".
"""

import io
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, Features, Image, List, Value
from PIL import Image as PILImage

_MESSAGES = List({"role": Value("string"), "content": Value("string")})
TRL_FEATURES = Features({"images": List(Image()), "prompt": _MESSAGES, "chosen": _MESSAGES, "rejected": _MESSAGES})
RLAIFV_FEATURES = Features(
    {
        "ds_name": Value("string"),
        "image": Image(),
        "question": Value("string"),
        "chosen": Value("string"),
        "rejected": Value("string"),
        "origin_dataset": Value("string"),
        "origin_split": Value("string"),
        "idx": Value("string"),
        "image_path": Value("string"),
    }
)
_OPTIONAL_TEXT = ("ds_name", "origin_dataset", "origin_split", "image_path")
# A parquet row group holds at most _BATCH_ROWS rows and about _BATCH_BYTES of images and text: a batch is held
# in memory while it is written, and each row group leaves metadata in memory until the file is closed, so fixed
# small row groups (64 rows) made a 100k-row export grow by their metadata (+26 MB from 10k rows), and many rows
# of large images would hold them all. With 2 MB, peak memory measured the same at 10k and 100k rows.
_BATCH_ROWS = 1024
_BATCH_BYTES = 2 << 20
_READ_ROWS = 64  # rows read from a parquet file at a time: images make rows large
# Pillow's own bomb limit; the web app applies its stricter settings again on import.
MAX_PIXELS = PILImage.MAX_IMAGE_PIXELS


class FormatError(ValueError):
    """The file does not follow the format; the message names the column and, for one row, `row N`."""


@dataclass(frozen=True)
class RlaifvRecord:
    """One row of the RLAIF-V layout; also the input of the TRL writers (they need chosen and rejected)."""

    image: bytes
    question: str
    chosen: str | None = None
    rejected: str | None = None
    image_path: str = ""
    ds_name: str = ""
    origin_dataset: str = ""
    origin_split: str = ""
    idx: str = ""


RLAIFV_METADATA = ("ds_name", "idx", "origin_dataset", "origin_split", "image_path")


def rlaifv_metadata(record: RlaifvRecord) -> dict[str, str]:
    """A row's metadata columns, which an import keeps so that an export writes them back unchanged."""
    return {column: getattr(record, column) for column in RLAIFV_METADATA}


def trl_row(image, question: str, chosen: str, rejected: str) -> dict:
    """A TRL vision-preference row; `image` is whatever the target stores (bytes struct or a path)."""
    return {
        "images": [image],
        "prompt": [{"role": "user", "content": question}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def _pair_of(record: RlaifvRecord) -> tuple[str, str]:
    if record.chosen is None or record.rejected is None:
        raise ValueError(f"record {record.idx or record.question[:40]!r} has no chosen/rejected pair")
    return record.chosen, record.rejected


def _size(value) -> int:
    """About the bytes a row holds: its bytes and strings, however nested."""
    if isinstance(value, bytes | str):
        return len(value)
    if isinstance(value, dict):
        return sum(_size(item) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(_size(item) for item in value)
    return 8


def _tables(schema: pa.Schema, rows: Iterable[dict]) -> Iterator[pa.Table]:
    """Rows as tables of _BATCH_ROWS rows or _BATCH_BYTES at most; no rows at all still give one empty table, so
    the file carries the schema."""
    batch: list[dict] = []
    size, wrote = 0, False
    for row in rows:
        batch.append(row)
        size += _size(row)
        if len(batch) == _BATCH_ROWS or size >= _BATCH_BYTES:
            yield pa.Table.from_pylist(batch, schema=schema)
            batch, size, wrote = [], 0, True
    if batch or not wrote:
        yield pa.Table.from_pylist(batch, schema=schema)


def _write_rows(writer, schema: pa.Schema, rows: Iterable[dict]) -> int:
    """Stream rows to a parquet or arrow writer in small batches; returns the number of rows."""
    count = 0
    for table in _tables(schema, rows):
        writer.write_table(table)
        count += table.num_rows
    return count


class StreamSink:
    """A write-only file that hands over what was written since the last `take`: the sink of a streamed file
    (a parquet writer, or a zipfile.ZipFile, which writes data descriptors to a file it cannot seek)."""

    def __init__(self):
        self._buffer = bytearray()
        self._position = 0
        self.closed = False

    def write(self, data) -> int:
        self._buffer += data
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._buffer = bytes(self._buffer), bytearray()
        return data


def _parquet_chunks(features: Features, rows: Iterable[dict]) -> Iterator[bytes]:
    """The bytes of `_write_parquet`'s file, a batch of rows at a time (the footer last)."""
    sink = StreamSink()
    with pq.ParquetWriter(sink, features.arrow_schema) as writer:
        for table in _tables(features.arrow_schema, rows):
            writer.write_table(table)
            yield sink.take()
    yield sink.take()


def _write_parquet(path, features: Features, rows: Iterable[dict]) -> int:
    """One parquet file whose schema carries the `datasets` features (so images load as images)."""
    with pq.ParquetWriter(path, features.arrow_schema) as writer:
        return _write_rows(writer, features.arrow_schema, rows)


def _trl_rows(records: Iterable[RlaifvRecord]) -> Iterator[dict]:
    for r in records:
        yield trl_row({"bytes": r.image, "path": None}, r.question, *_pair_of(r))


def write_trl_parquet(records: Iterable[RlaifvRecord], path) -> int:
    """Write TRL rows with embedded images to one parquet file; returns the number of rows."""
    return _write_parquet(path, TRL_FEATURES, _trl_rows(records))


def trl_parquet_chunks(records: Iterable[RlaifvRecord]) -> Iterator[bytes]:
    """The file `write_trl_parquet` writes, as successive pieces of bytes."""
    return _parquet_chunks(TRL_FEATURES, _trl_rows(records))


def write_trl_dataset(records: Iterable[RlaifvRecord], path) -> int:
    """Write TRL rows with embedded images as a `datasets` folder (`save_to_disk`); returns the row count.

    Rows stream through an arrow file first, so memory stays flat however many pairs there are.
    """
    schema = TRL_FEATURES.arrow_schema
    with tempfile.TemporaryDirectory() as tmp:
        arrow = str(Path(tmp) / "rows.arrow")
        with pa.OSFile(arrow, "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            count = _write_rows(writer, schema, _trl_rows(records))
        if not count:  # datasets saves an empty dataset that load_from_disk then cannot read
            raise ValueError("no rows to write: an empty dataset folder would not load")
        Dataset.from_file(arrow).save_to_disk(str(path))
    return count


def _relative_image_path(record: RlaifvRecord) -> str:
    name = PurePosixPath(record.image_path)
    if not record.image_path or name.is_absolute() or ".." in name.parts:
        raise ValueError(f"image_path {record.image_path!r} must be a relative path inside the export folder")
    return str(name)


def trl_jsonl_line(image_name: str, question: str, chosen: str, rejected: str) -> str:
    """One line of `write_trl_jsonl`'s file, its newline included."""
    return json.dumps(trl_row(image_name, question, chosen, rejected), ensure_ascii=False) + "\n"


def write_trl_jsonl(records: Iterable[RlaifvRecord], path) -> int:
    """Write TRL rows as JSONL; images go to files next to it, named by `image_path`; returns the row count."""
    path = Path(path)
    written: set[str] = set()
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            name = _relative_image_path(record)
            if name not in written:
                (path.parent / name).parent.mkdir(parents=True, exist_ok=True)
                (path.parent / name).write_bytes(record.image)
                written.add(name)
            out.write(trl_jsonl_line(name, record.question, *_pair_of(record)))
            count += 1
    return count


def load_trl_jsonl(path) -> Dataset:
    """Read a JSONL written by `write_trl_jsonl` as a dataset whose images decode to PIL images."""
    path = Path(path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        row["images"] = [{"bytes": None, "path": str(path.parent / name)} for name in row["images"]]
    return Dataset.from_list(rows, features=TRL_FEATURES)


def _rlaifv_rows(records: Iterable[RlaifvRecord]) -> Iterator[dict]:
    for r in records:
        yield {
            "ds_name": r.ds_name,
            "image": {"bytes": r.image, "path": r.image_path or None},
            "question": r.question,
            "chosen": r.chosen,
            "rejected": r.rejected,
            "origin_dataset": r.origin_dataset,
            "origin_split": r.origin_split,
            "idx": r.idx,
            "image_path": r.image_path,
        }


def write_rlaifv(records: Iterable[RlaifvRecord], path) -> int:
    """Write records in the RLAIF-V parquet layout; returns the number of rows."""
    return _write_parquet(path, RLAIFV_FEATURES, _rlaifv_rows(records))


def rlaifv_chunks(records: Iterable[RlaifvRecord]) -> Iterator[bytes]:
    """The file `write_rlaifv` writes, as successive pieces of bytes."""
    return _parquet_chunks(RLAIFV_FEATURES, _rlaifv_rows(records))


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)


def _check_schema(schema: pa.Schema) -> list[str]:
    """Fail on a missing or mistyped column; return the known columns present, to read."""
    names = set(schema.names)
    for column in ("image", "question"):
        if column not in names:
            raise FormatError(f"missing column '{column}' (the file has: {', '.join(schema.names)})")
    if ("chosen" in names) != ("rejected" in names):
        present, absent = ("chosen", "rejected") if "chosen" in names else ("rejected", "chosen")
        raise FormatError(f"column '{present}' is present but '{absent}' is missing")
    image = schema.field("image").type
    if not (
        pa.types.is_struct(image)
        and image.get_field_index("bytes") >= 0
        and (pa.types.is_binary(image.field("bytes").type) or pa.types.is_large_binary(image.field("bytes").type))
    ):
        raise FormatError(f"column 'image' has type {image}, expected struct<bytes: binary, path: string>")
    for column in ("question", "chosen", "rejected", *_OPTIONAL_TEXT):
        if column in names and not _is_text(schema.field(column).type):
            raise FormatError(f"column '{column}' has type {schema.field(column).type}, expected string")
    if "idx" in names and not (_is_text(schema.field("idx").type) or pa.types.is_integer(schema.field("idx").type)):
        raise FormatError(f"column 'idx' has type {schema.field('idx').type}, expected string or integer")
    return [name for name in RLAIFV_FEATURES if name in names]


def _check_image(row: int, data: bytes):
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise FormatError(f"row {row}: column 'image': {image.width}×{image.height} pixels is too many")
            image.load()
    except FormatError:
        raise
    except PILImage.UnidentifiedImageError:  # its message holds the repr of a buffer: say it plainly
        raise FormatError(f"row {row}: column 'image': not a readable image (no format Pillow recognises)") from None
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError) as exc:
        raise FormatError(f"row {row}: column 'image': not a readable image ({exc})") from None


def _record(row: int, values: dict, check_images: bool) -> RlaifvRecord:
    image = values["image"] or {}
    if not image.get("bytes"):
        where = f" (only a path, '{image['path']}': images must be embedded)" if image.get("path") else ""
        raise FormatError(f"row {row}: column 'image' has no image bytes{where}")
    if check_images:
        _check_image(row, image["bytes"])
    question = (values["question"] or "").strip()
    if not question:
        raise FormatError(f"row {row}: column 'question' is empty")
    chosen, rejected = values.get("chosen"), values.get("rejected")
    for column, value, other in (("chosen", chosen, rejected), ("rejected", rejected, chosen)):
        if other is not None and not (value or "").strip():
            raise FormatError(f"row {row}: column '{column}' is empty but its partner is set")
    for column, value in values.items():
        if isinstance(value, str) and "\x00" in value:
            raise FormatError(f"row {row}: column '{column}' contains a NUL character")
    idx = values.get("idx")
    return RlaifvRecord(
        image=image["bytes"],
        question=question,
        chosen=chosen,
        rejected=rejected,
        idx=str(row) if idx is None else str(idx),
        **{column: values.get(column) or "" for column in _OPTIONAL_TEXT},
    )


def read_rlaifv(path, check_images: bool = True) -> Iterator[tuple[int, RlaifvRecord]]:
    """Yield (row, record) from an RLAIF-V parquet file, streaming; raise FormatError at the first bad row.

    `check_images=False` skips decoding the images, for a caller that validates them itself.
    """
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise FormatError(f"not a readable parquet file ({str(exc).rstrip('.')})") from None
    columns = _check_schema(parquet.schema_arrow)
    row = 0
    for batch in parquet.iter_batches(batch_size=_READ_ROWS, columns=columns):
        for values in batch.to_pylist():
            yield row, _record(row, values, check_images)
            row += 1
