"""Import the RLAIF-V dataset's parquet layout: its instructions, and its pairs as a new iteration.

Rows stream from the file (one shard of the real dataset is about 1 GB) and are written in one
transaction: a bad row aborts with `row N: <what is wrong>` (N counts from 0, as pandas does), the
transaction rolls back and the image files this import created are removed, so a failed import leaves
nothing behind, as in webapp/transfer/importing.py. Images pass `validate_image` and are stored by content.

Instructions are idempotent (unique source + image + question): importing a file again adds none. Their
source is `--source`, else the row's `origin_dataset`, else its `ds_name`. Rows with chosen and rejected
become one new iteration (next number, policy `imported:<file name>`, labeler `imported`, status
reviewing) holding a Response per distinct answer of an instruction (seeds 0, 1, 2, … in row order) and
the pairs with score_gap=1: the dataset carries no scores, only which answer won. Each pair keeps its row's
metadata (ds_name, idx, origin_dataset, origin_split, image_path) in `PreferencePair.origin`, which an
export in the RLAIF-V layout writes back unchanged. A file whose pairs were
imported before is refused, recognised by its SHA-256 in the iteration's config: a second copy of the same
pairs would silently double their weight in training. The import, and the iteration it creates, are on the
audit trail.
"""

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from django.core.files.storage import default_storage
from django.db import transaction

from labeling.formats import FormatError, RlaifvRecord, read_rlaifv, rlaifv_metadata
from webapp import limits
from webapp.accounts import audit
from webapp.iterations import counts
from webapp.iterations.creating import create_iteration
from webapp.models import AuditAction, Instruction, Iteration, IterationStatus, PreferencePair, Response
from webapp.transfer.image_writes import image_writes
from webapp.transfer.images import ImageError, store_image, validate_image
from webapp.transfer.importing import WRITE_BATCH, existing_instructions

DEFAULT_SOURCE = "rlaifv"


class RlaifvImportFailed(ValueError):
    """The file cannot be imported; the message names the row (`row N:`) when one row is at fault."""


@dataclass(frozen=True)
class RlaifvImportResult:
    created: int
    existing: int
    pairs: int
    iteration: Iteration | None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise RlaifvImportFailed(f"cannot read: {exc.strerror or 'input/output error'}") from None
    return digest.hexdigest()


@dataclass(frozen=True)
class _Row:
    """A checked row: its instruction's key and image, and its pair when it has one."""

    key: tuple[str, str, str]  # source, image_sha256, question: what names an instruction
    image: tuple[str, int, int]  # stored name, width, height
    pair: tuple[str, str] | None
    origin: dict | None  # the pair's RLAIF-V metadata, kept on the pair


class _Images:
    """Each distinct image is validated and stored once, however many rows embed it; only its name is kept."""

    def __init__(self, written: list[str]):
        self.written, self.seen = written, {}

    def stored(self, row: int, data: bytes) -> tuple[str, str, int, int]:
        digest = hashlib.sha256(data).hexdigest()
        if digest not in self.seen:
            try:
                image = validate_image(data)
            except ImageError as exc:
                raise RlaifvImportFailed(f"row {row}: column 'image': {exc}") from None
            if store_image(image):
                self.written.append(image.name)
            self.seen[digest] = (image.sha256, image.name, image.width, image.height)
        return self.seen[digest]


def _checked(row: int, record: RlaifvRecord, source: str | None, images: _Images) -> _Row:
    sha256, name, width, height = images.stored(row, record.image)
    origin = (source or record.origin_dataset or record.ds_name or DEFAULT_SOURCE).strip()
    if len(origin) > 100:
        raise RlaifvImportFailed(f"row {row}: source '{origin[:40]}…' is over 100 characters")
    texts = [("question", record.question, limits.QUESTION)]
    texts += [(column, getattr(record, column) or "", limits.ANSWER) for column in ("chosen", "rejected")]
    for column, text, limit in texts:
        if error := limits.too_long(f"column '{column}'", text, limit):
            raise RlaifvImportFailed(f"row {row}: {error}")
    if record.chosen is not None and record.chosen == record.rejected:
        raise RlaifvImportFailed(f"row {row}: columns 'chosen' and 'rejected' hold the same answer")
    if record.chosen is None:
        return _Row((origin, sha256, record.question), (name, width, height), None, None)
    pair = (record.chosen, record.rejected)
    return _Row((origin, sha256, record.question), (name, width, height), pair, rlaifv_metadata(record))


def _new_iteration(path: Path, digest: str) -> Iteration:
    return create_iteration(
        instructions=[],
        policy=f"imported:{path.name}",
        labeler="imported",
        status=IterationStatus.REVIEWING,
        config={"imported_from": path.name, "sha256": digest},
    )


def _instructions(rows: list[_Row]) -> tuple[dict, int]:
    """The instruction id of each row's key, creating those not there yet; and how many were created."""
    new = {}
    for row in rows:
        new.setdefault(row.key, row.image)
    ids = existing_instructions(list(new))
    for key in ids:
        del new[key]
    created = Instruction.objects.bulk_create(
        [
            Instruction(source=source, image_sha256=sha256, question=question, image=name, width=width, height=height)
            for (source, sha256, question), (name, width, height) in new.items()
        ],
        batch_size=WRITE_BATCH,
    )  # their ids come back (PostgreSQL, SQLite 3.35+)
    return ids | {(i.source, i.image_sha256, i.question): i.pk for i in created}, len(created)


def _pairs(iteration: Iteration, rows: list[_Row], ids: dict) -> int:
    """A Response per distinct answer of an instruction (seeds 0, 1, 2, … in row order) and the distinct pairs."""
    seeds: dict[tuple[int, str], int] = {}
    per_instruction: Counter[int] = Counter()
    for row in rows:
        for text in row.pair or ():
            instruction = ids[row.key]
            if (instruction, text) not in seeds:
                seeds[instruction, text] = per_instruction[instruction]
                per_instruction[instruction] += 1
    Response.objects.bulk_create(
        [Response(iteration=iteration, instruction_id=i, seed=seed, text=text) for (i, text), seed in seeds.items()],
        batch_size=WRITE_BATCH,
    )
    answer = {
        (instruction, seed): pk
        for instruction, seed, pk in Response.objects.filter(iteration=iteration).values_list(
            "instruction", "seed", "pk"
        )
    }
    pairs = {}
    for row in rows:
        if row.pair:
            instruction = ids[row.key]
            chosen, rejected = (answer[instruction, seeds[instruction, text]] for text in row.pair)
            pairs.setdefault((chosen, rejected), (instruction, row.origin))  # the first row's, as a get_or_create
    PreferencePair.objects.bulk_create(
        [
            PreferencePair(
                iteration=iteration, instruction_id=i, chosen_id=c, rejected_id=r, score_gap=1, origin=origin
            )
            for (c, r), (i, origin) in pairs.items()
        ],
        batch_size=WRITE_BATCH,
    )
    # A new iteration holds no instructions yet: insert the links, rather than `add` them (which first reads
    # back every one it is given).
    links = Iteration.instructions.through
    links.objects.bulk_create(
        [links(iteration=iteration, instruction_id=i) for i in {i for i, _ in pairs.values()}], batch_size=WRITE_BATCH
    )
    return len(pairs)


def _import_rows(path: Path, digest: str, source: str | None, written: list[str]) -> RlaifvImportResult:
    previous = Iteration.objects.filter(config__sha256=digest).first()
    if previous:
        raise RlaifvImportFailed(f"its pairs were already imported as {previous}")
    images = _Images(written)
    rows = [_checked(row, record, source, images) for row, record in read_rlaifv(path, check_images=False)]
    ids, created = _instructions(rows)
    iteration, pairs = None, 0
    if any(row.pair for row in rows):
        iteration = _new_iteration(path, digest)
        pairs = _pairs(iteration, rows, ids)
        counts.refresh(iteration)
    existing = len({ids[row.key] for row in rows}) - created
    audit.record(
        AuditAction.IMPORT_RLAIFV, iteration=iteration, target=str(path), sha256=digest, created=created,
        existing=existing, pairs=pairs,
    )  # fmt: skip
    return RlaifvImportResult(created=created, existing=existing, pairs=pairs, iteration=iteration)


def import_rlaifv(path, source: str | None = None) -> RlaifvImportResult:
    """Import an RLAIF-V parquet file all or nothing; `source` overrides the rows' dataset names."""
    path = Path(path)
    if source is not None and not 1 <= len(source.strip()) <= 100:
        raise RlaifvImportFailed("source must be 1 to 100 characters")
    digest = _sha256(path)
    written: list[str] = []
    with image_writes():
        try:
            with transaction.atomic():
                return _import_rows(path, digest, source and source.strip(), written)
        except BaseException as exc:
            for name in written:
                default_storage.delete(name)
            if isinstance(exc, FormatError):
                raise RlaifvImportFailed(str(exc)) from None
            raise
