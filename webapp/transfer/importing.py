"""Import instructions (image + question) from JSONL, all or nothing.

Each line is a JSON object: `image` (a path relative to the images folder), `question`, optional
`source`, `split` and `objects` (the objects the image shows, when known: ground truth that evaluation
scores answers against). Every line is checked before anything is written; a bad line aborts the whole
import with `line N: <what is wrong>`. Rows are written in one transaction and image files written by
an import that fails are removed again, so a failed import leaves nothing behind. Re-importing the
same data creates nothing new (unique source + image + question).
"""

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction

from labeling.batching import batched
from webapp import limits
from webapp.accounts import audit
from webapp.accounts.actors import Actor
from webapp.models import AuditAction, Instruction, Split
from webapp.transfer.image_writes import image_writes
from webapp.transfer.images import ImageError, ValidImage, store_image, validate_image


class ImportFailed(ValueError):
    """A bad input line; the message starts with `line N:`."""


@dataclass(frozen=True)
class ImportResult:
    created: int
    skipped: int


@dataclass(frozen=True)
class _Row:
    image: ValidImage
    question: str
    source: str
    split: str
    objects: list[str] | None


def _objects_field(record: dict, line: int) -> list[str] | None:
    value = record.get("objects")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise ImportFailed(f"line {line}: field 'objects' must be a list of object names (non-empty strings)")
    if any(len(item) > 100 or "\x00" in item for item in value) or len(value) > 1000:
        raise ImportFailed(f"line {line}: field 'objects' holds over 1000 names, a name over 100 characters or a NUL")
    return [" ".join(item.split()) for item in value]


# What the JSON in a line holds, in JSON's words rather than Python's.
JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
              bool: "true or false", type(None): "null"}  # fmt: skip


def _string_field(record: dict, field: str, line: int, required: bool, default: str = "") -> str:
    if field not in record or record[field] is None:
        if required:
            raise ImportFailed(f"line {line}: missing field '{field}'")
        return default
    value = record[field]
    if not isinstance(value, str):
        raise ImportFailed(f"line {line}: field '{field}' must be a string, not {JSON_TYPES[type(value)]}")
    if required and not value.strip():
        raise ImportFailed(f"line {line}: field '{field}' is empty")
    if "\x00" in value:
        raise ImportFailed(f"line {line}: field '{field}' contains a NUL character")
    return value


class _Images:
    """The images folder; each image file is read and validated once, however many lines share it.

    Only what was learnt is kept (format, size, sha256), not the bytes: an upload may unpack to gigabytes, and
    the worker holds one image at a time. `stored` reads each again to write it, and refuses one that changed.
    """

    def __init__(self, folder: Path):
        self.root, self.checked, self.paths = Path(folder).resolve(), {}, {}

    def valid(self, path: Path, name: str) -> ValidImage:
        if path not in self.checked:
            if not path.is_file():
                raise FileNotFoundError(name)
            self.checked[path] = replace(validate_image(path.read_bytes()), data=b"")
            self.paths.setdefault(self.checked[path].name, (path, name))
        return self.checked[path]

    def stored(self, image: ValidImage) -> bool:
        """Write `image` (read again from its file) under its content address; True when this call created it."""
        path, name = self.paths[image.name]
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != image.sha256:
            raise ImportFailed(f"image '{name[:100]}' changed while it was being imported: import again")
        return store_image(replace(image, data=data))


def _check_line(line_no: int, text: str, images: _Images, default_source: str) -> _Row:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFailed(f"line {line_no}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ImportFailed(f"line {line_no}: JSON nested too deeply") from None
    if not isinstance(record, dict):
        raise ImportFailed(f"line {line_no}: expected a JSON object, got {JSON_TYPES[type(record)]}")
    image_name = _string_field(record, "image", line_no, required=True)
    question = _string_field(record, "question", line_no, required=True).strip()
    if error := limits.too_long("field 'question'", question, limits.QUESTION):
        raise ImportFailed(f"line {line_no}: {error}")
    source = _string_field(record, "source", line_no, required=False, default=default_source).strip()
    split = _string_field(record, "split", line_no, required=False, default=Split.TRAIN).strip()
    if not source or len(source) > 100:
        raise ImportFailed(f"line {line_no}: field 'source' must be 1 to 100 characters")
    if split not in Split.values:
        raise ImportFailed(
            f"line {line_no}: field 'split' must be one of {', '.join(Split.values)}, not '{split[:40]}'"
        )
    if "://" in image_name:  # never fetched: images are files in the images folder
        raise ImportFailed(f"line {line_no}: field 'image' must be a file in the images folder, not a URL")
    if len(image_name) > 1000:
        raise ImportFailed(f"line {line_no}: field 'image' is longer than 1000 characters")
    root = images.root
    path = (root / image_name).resolve()
    if not path.is_relative_to(root):
        raise ImportFailed(f"line {line_no}: image path '{image_name}' leaves the images folder")
    try:
        image = images.valid(path, image_name)
    except ImageError as exc:
        raise ImportFailed(f"line {line_no}: {image_name}: {exc}") from None
    except FileNotFoundError:
        raise ImportFailed(f"line {line_no}: image file not found: {image_name}") from None
    except OSError as exc:
        raise ImportFailed(f"line {line_no}: image '{image_name[:100]}' cannot be read: {exc.strerror}") from None
    return _Row(image, question, source, split, _objects_field(record, line_no))


# The longest line: a question (limits.QUESTION), an image's name and up to 1000 object names fit well within it.
MAX_LINE_BYTES = 256 * 1024


def read_jsonl(file) -> list[tuple[int, str]]:
    """Numbered non-blank lines of a JSONL file: a path, or a file opened in binary mode. Read a line at a time,
    each at most MAX_LINE_BYTES: a file of one endless line would otherwise be read whole into memory."""
    try:
        if hasattr(file, "read"):
            return _lines(file)
        with open(file, "rb") as handle:
            return _lines(handle)
    except OSError as exc:
        raise ImportFailed(f"cannot read: {exc.strerror or 'unreadable file'}") from None


def _lines(handle) -> list[tuple[int, str]]:
    lines, offset, number = [], 0, 0
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise ImportFailed(f"line {number}: longer than {MAX_LINE_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFailed(f"not UTF-8 text (byte {offset + exc.start})") from None
        offset += len(raw)
        for n, line in enumerate(text.splitlines() or [""], start=number):  # \r, \v, … split lines as before
            number = n
            if line.strip():
                lines.append((n, line))
    return lines


def import_instructions(
    lines: Iterable[tuple[int, str]],
    images_dir: Path,
    default_source: str = "user",
    progress: Callable[[str, int, int], None] | None = None,
    commit_with: Callable[[ImportResult], None] | None = None,
    origin: str = "",
    actor: Actor | None = None,
):
    """Check every line, then write all rows and images in one transaction; returns an ImportResult.

    The import is put on the audit trail in that transaction, naming `origin` (the file, or the upload) and
    `actor` (default: the request's user, else the command line).

    `progress(phase, done, total)` hears of each line checked ("checking"), then once that writing starts
    ("writing"; rows written inside the transaction are invisible to others until it commits).
    `commit_with(result)` runs last inside the transaction, so what it writes commits with the rows or not at
    all. The write and its clean-up run under the image-writing lock (webapp/transfer/image_writes.py).
    """
    lines = list(lines)
    report = progress or (lambda phase, done, total: None)
    images = _Images(images_dir)
    rows = []
    for n, text in lines:
        rows.append(_check_line(n, text, images, default_source))
        report("checking", len(rows), len(lines))
    if not rows:
        raise ImportFailed("no instructions to import (the file has no non-blank lines)")
    report("writing", len(rows), len(rows))
    written: list[str] = []
    with image_writes():
        try:
            with transaction.atomic():
                for image in {row.image.name: row.image for row in rows}.values():
                    if images.stored(image):
                        written.append(image.name)
                result = _write(rows)
                audit.record(
                    AuditAction.IMPORT, target=origin, actor=actor, created=result.created, skipped=result.skipped,
                    source=default_source,
                )  # fmt: skip
                if commit_with:
                    commit_with(result)
        except BaseException:
            for name in written:
                default_storage.delete(name)
            raise
    return result


WRITE_BATCH = 300  # rows looked up and inserted per query (3 parameters each: under SQLite's 999)


def _write(rows: list[_Row]) -> ImportResult:
    """Insert the rows not there yet (source, image and question name one), a batch per query."""
    new = {}
    for row in rows:
        new.setdefault((row.source, row.image.sha256, row.question), row)  # the first line wins
    for key in existing_instructions(list(new)):
        del new[key]
    try:
        Instruction.objects.bulk_create(
            [
                Instruction(
                    source=row.source,
                    image_sha256=row.image.sha256,
                    question=row.question,
                    image=row.image.name,
                    width=row.image.width,
                    height=row.image.height,
                    split=row.split,
                    objects_present=row.objects,
                )
                for row in new.values()
            ],
            batch_size=WRITE_BATCH,
        )
    except IntegrityError:
        raise ImportFailed("another import added some of these instructions meanwhile: import again") from None
    return ImportResult(created=len(new), skipped=len(rows) - len(new))


def existing_instructions(keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
    """The id of each (source, image_sha256, question) key an instruction has already, looked up through the
    unique index WRITE_BATCH keys a query."""
    table = Instruction._meta.db_table
    found = {}
    for batch in batched(keys, WRITE_BATCH):
        values = ", ".join(["(%s, %s, %s)"] * len(batch))
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT source, image_sha256, question, id FROM {table} "
                f"WHERE (source, image_sha256, question) IN (VALUES {values})",
                [part for key in batch for part in key],
            )
            found |= {(source, sha256, question): pk for source, sha256, question, pk in cursor.fetchall()}
    return found
