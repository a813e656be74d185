"""Import the RLAIF-V dataset's parquet layout: its instructions, and its pairs as a new iteration.

Rows stream from the file (one shard of the real dataset is about 1 GB) and are written in one
transaction: a bad row aborts with `row N: <what is wrong>` (N counts from 0, as pandas does), the
transaction rolls back and the image files this import created are removed, so a failed import leaves
nothing behind, as in webapp/importing.py. Images pass `validate_image` and are stored by content.

Instructions are idempotent (unique source + image + question): importing a file again adds none. Their
source is `--source`, else the row's `origin_dataset`, else its `ds_name`. Rows with chosen and rejected
become one new iteration (next number, policy `imported:<file name>`, labeler `imported`, status
reviewing) holding a Response per distinct answer of an instruction (seeds 0, 1, 2, … in row order) and
the pairs with score_gap=1: the dataset carries no scores, only which answer won. A file whose pairs were
imported before is refused, recognised by its SHA-256 in the iteration's config: a second copy of the same
pairs would silently double their weight in training.
"""

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from django.core.files.storage import default_storage
from django.db import transaction

from labeling.formats import FormatError, RlaifvRecord, read_rlaifv
from webapp import counts, limits
from webapp.images import ImageError, store_image, validate_image
from webapp.iterations import create_iteration
from webapp.models import Instruction, Iteration, IterationStatus, PreferencePair, Response

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


def _instruction(row: int, record: RlaifvRecord, source: str | None, written: list[str]) -> tuple[Instruction, bool]:
    try:
        image = validate_image(record.image)
    except ImageError as exc:
        raise RlaifvImportFailed(f"row {row}: column 'image': {exc}") from None
    name = (source or record.origin_dataset or record.ds_name or DEFAULT_SOURCE).strip()
    if len(name) > 100:
        raise RlaifvImportFailed(f"row {row}: source '{name[:40]}…' is over 100 characters")
    texts = [("question", record.question, limits.QUESTION)]
    texts += [(column, getattr(record, column) or "", limits.ANSWER) for column in ("chosen", "rejected")]
    for column, text, limit in texts:
        if error := limits.too_long(f"column '{column}'", text, limit):
            raise RlaifvImportFailed(f"row {row}: {error}")
    if store_image(image):
        written.append(image.name)
    return Instruction.objects.get_or_create(
        source=name,
        image_sha256=image.sha256,
        question=record.question,
        defaults={"image": image.name, "width": image.width, "height": image.height},
    )


def _new_iteration(path: Path, digest: str) -> Iteration:
    return create_iteration(
        instructions=[],
        policy=f"imported:{path.name}",
        labeler="imported",
        status=IterationStatus.REVIEWING,
        config={"imported_from": path.name, "sha256": digest},
    )


def _import_rows(path: Path, digest: str, source: str | None, written: list[str]) -> RlaifvImportResult:
    previous = Iteration.objects.filter(config__sha256=digest).first()
    if previous:
        raise RlaifvImportFailed(f"its pairs were already imported as {previous}")
    iteration, seen, created, pairs = None, set(), 0, 0
    answers: dict[tuple[int, str], Response] = {}
    seeds: Counter[int] = Counter()

    def answer(instruction: Instruction, text: str) -> Response:
        key = (instruction.pk, text)
        if key not in answers:
            seed = seeds[instruction.pk]
            seeds[instruction.pk] += 1
            answers[key] = Response.objects.create(iteration=iteration, instruction=instruction, seed=seed, text=text)
        return answers[key]

    for row, record in read_rlaifv(path, check_images=False):
        instruction, was_created = _instruction(row, record, source, written)
        created += was_created
        seen.add(instruction.pk)
        if record.chosen is None:
            continue
        if record.chosen == record.rejected:
            raise RlaifvImportFailed(f"row {row}: columns 'chosen' and 'rejected' hold the same answer")
        iteration = iteration or _new_iteration(path, digest)
        chosen, rejected = answer(instruction, record.chosen), answer(instruction, record.rejected)
        _, made = PreferencePair.objects.get_or_create(
            iteration=iteration, chosen=chosen, rejected=rejected, defaults={"instruction": instruction, "score_gap": 1}
        )
        pairs += made
    if iteration:
        iteration.instructions.add(*{pk for pk, _ in answers})
        counts.refresh(iteration)
    return RlaifvImportResult(created=created, existing=len(seen) - created, pairs=pairs, iteration=iteration)


def import_rlaifv(path, source: str | None = None) -> RlaifvImportResult:
    """Import an RLAIF-V parquet file all or nothing; `source` overrides the rows' dataset names."""
    path = Path(path)
    if source is not None and not 1 <= len(source.strip()) <= 100:
        raise RlaifvImportFailed("source must be 1 to 100 characters")
    digest = _sha256(path)
    written: list[str] = []
    try:
        with transaction.atomic():
            return _import_rows(path, digest, source and source.strip(), written)
    except BaseException as exc:
        for name in written:
            default_storage.delete(name)
        if isinstance(exc, FormatError):
            raise RlaifvImportFailed(str(exc)) from None
        raise
