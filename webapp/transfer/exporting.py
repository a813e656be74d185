"""Export an iteration's preference pairs: TRL rows for training, or the RLAIF-V layout for sharing.

Only pairs no reviewer excluded, ordered as the *effective* verdicts order them. Pairs are rebuilt when a
reviewer overrides a claim, but the export does not rely on it: it recomputes both scores, drops a pair that
became a tie and swaps one that flipped. Pairs whose two responses have no claims at all (imported from a
dataset that carries no scores) keep their stored order, the only preference known for them.

Formats (labeling/formats.py): `trl` is a `datasets` folder (save_to_disk), or one parquet file when the
path ends in .parquet; `jsonl` is TRL rows whose images are paths relative to the JSONL's folder, the image
files written there as images/<sha256[:2]>/<sha256>.<ext>; `rlaifv` is the RLAIF-V parquet layout. The output
is written under a temporary name and renamed into place, so a failed export leaves no half-written file.
An imported pair keeps the metadata of the row it came from (ds_name, idx, origin_dataset, origin_split,
image_path); a pair made here is described as ours (ds_name "RLAIF-V-Studio", idx its id, origin_split the
iteration's models).

`export_download` gives the same data as a stream of bytes for the browser: pairs are read PAIR_CHUNK at a
time and each batch of rows is sent as soon as it is written. `trl` streams the parquet file (the command's
`--out FILE.parquet`; a `datasets` folder is no single file), `rlaifv` its parquet file, and `jsonl` a zip
holding pairs.jsonl and the images/ folder beside it, exactly the files the command writes into its folder.
"""

import json
import os
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

from django.core.files.storage import default_storage

from labeling.formats import (
    RlaifvRecord,
    StreamSink,
    rlaifv_chunks,
    trl_jsonl_line,
    trl_parquet_chunks,
    write_rlaifv,
    write_trl_dataset,
    write_trl_jsonl,
    write_trl_parquet,
)
from webapp.iterations.config import config
from webapp.models import (
    REVIEW_ROW,
    VERDICT_ROW,
    Claim,
    Iteration,
    Response,
    Review,
    effective_verdicts,
    with_labeler_verdict,
)

FORMATS = ("trl", "rlaifv", "jsonl")
DS_NAME = "RLAIF-V-Studio"
PAIR_CHUNK = 500  # pairs read, and their responses scored, per query


class ExportFailed(ValueError):
    """Nothing to export, or the output cannot be written; the message says why."""


@dataclass
class ExportResult:
    """What an export wrote; filled in as the pairs go by."""

    written: int = 0
    ties_dropped: int = 0
    flipped: int = 0


@dataclass(frozen=True)
class ExportedPair:
    """A pair as it is written: its instruction's image, question and source, and both answers' texts."""

    pk: int
    image: str
    question: str
    source: str
    origin: dict | None  # an imported pair's RLAIF-V metadata, exported again unchanged
    chosen: str
    rejected: str


# What an export reads of a pair: plain rows, not model instances (building those cost more than the query).
PAIR_ROW = ("pk", "instruction__image", "instruction__question", "instruction__source", "origin")
ANSWERS = ("chosen_id", "chosen__text", "rejected_id", "rejected__text")


def _rejections(iteration: Iteration, response_ids) -> dict[int, int | None]:
    """Each response's effective rejections (the rule of `effective_verdicts`, and its repeated claims where the
    iteration rejects repeats); None for one without claims."""
    claims = with_labeler_verdict(Claim.objects.filter(response__in=response_ids), iteration.labeler, iteration.margin)
    reviews = Review.objects.filter(claim__response__in=response_ids).order_by("created_at", "pk")
    rejected = dict.fromkeys(response_ids)
    for verdict in effective_verdicts(claims.values_list(*VERDICT_ROW), reviews.values_list(*REVIEW_ROW)).values():
        rejected[verdict.response_id] = (rejected[verdict.response_id] or 0) + (verdict.accepted is False)
    if config(iteration)["reject_repeats"]:
        repeats = Response.objects.filter(pk__in=response_ids, repeated_claims__gt=0).values_list(
            "pk", "repeated_claims"
        )
        for response, count in repeats:
            if rejected[response] is not None:
                rejected[response] += count
    return rejected


def effective_pairs(iteration: Iteration, tally: ExportResult) -> Iterator[ExportedPair]:
    """The iteration's non-excluded pairs ordered by effective verdicts, read PAIR_CHUNK at a time through a
    server-side cursor (on PostgreSQL), so memory does not grow with the pairs; `tally` counts the ties dropped
    and the pairs flipped."""
    pairs = iteration.pairs.filter(excluded=False).order_by("pk").values_list(*PAIR_ROW, *ANSWERS)
    rows = pairs.iterator(chunk_size=PAIR_CHUNK)
    while chunk := list(islice(rows, PAIR_CHUNK)):
        n_rejected = _rejections(iteration, {row[5] for row in chunk} | {row[7] for row in chunk})
        ordered = []
        for pk, image, question, source, origin, chosen, chosen_text, rejected, rejected_text in chunk:
            a, b = n_rejected[chosen], n_rejected[rejected]
            flip = False
            if a is not None or b is not None:
                a, b = a or 0, b or 0
                if a == b:
                    tally.ties_dropped += 1
                    continue
                if flip := a > b:
                    chosen, chosen_text, rejected, rejected_text = rejected, rejected_text, chosen, chosen_text
                    tally.flipped += 1
            exported = ExportedPair(pk, image, question, source, origin, chosen_text, rejected_text)
            ordered.append((flip, chosen, rejected, exported))
        # A flip can duplicate a pair stored the other way round, which is exported in its own right.
        flipped = [chosen for flip, chosen, _, _ in ordered if flip]
        stored = set()
        if flipped:
            stored = set(iteration.pairs.filter(excluded=False, chosen__in=flipped).values_list("chosen", "rejected"))
        for flip, chosen, rejected, exported in ordered:
            if not (flip and (chosen, rejected) in stored):
                yield exported


def nonempty_pairs(iteration: Iteration, tally: ExportResult) -> Iterator[ExportedPair]:
    """`effective_pairs`, or ExportFailed before anything is written when there are none."""
    pairs = effective_pairs(iteration, tally)
    first = next(pairs, None)
    if first is None:
        raise ExportFailed(
            f"{iteration} has no pairs to export ({tally.ties_dropped} became ties, excluded pairs are left out)"
        )
    return chain([first], pairs)


def _records(iteration: Iteration, pairs: Iterable[ExportedPair], tally: ExportResult) -> Iterator[RlaifvRecord]:
    origin_split = json.dumps({"model": iteration.policy, "feedback_model": iteration.labeler})
    for exported in pairs:
        try:
            with default_storage.open(exported.image, "rb") as file:
                image = file.read()
        except FileNotFoundError:
            raise ExportFailed(f"pair {exported.pk}: image {exported.image} is missing") from None
        made_here = {
            "image_path": exported.image,
            "ds_name": DS_NAME,
            "origin_dataset": exported.source,
            "origin_split": origin_split,
            "idx": str(exported.pk),
        }
        yield RlaifvRecord(
            image=image,
            question=exported.question,
            chosen=exported.chosen,
            rejected=exported.rejected,
            **(exported.origin or made_here),
        )
        tally.written += 1


def _remove(path: Path):
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def export_pairs(iteration: Iteration, fmt: str, out) -> ExportResult:
    """Write the iteration's effective pairs to `out` in format `fmt` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise ExportFailed(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    out = Path(out)
    if out.exists():
        raise ExportFailed(f"{out} already exists")
    tally = ExportResult()
    pairs = nonempty_pairs(iteration, tally)
    writer = {"trl": write_trl_dataset, "rlaifv": write_rlaifv, "jsonl": write_trl_jsonl}[fmt]
    if fmt == "trl" and out.suffix == ".parquet":
        writer = write_trl_parquet
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    _remove(partial)
    try:
        writer(_records(iteration, pairs, tally), partial)
        os.replace(partial, out)
    except BaseException:
        _remove(partial)
        raise
    return tally


JSONL_NAME = "pairs.jsonl"
IMAGE_PIECE = 1024 * 1024  # bytes of an image copied into the zip at a time


@dataclass(frozen=True)
class Download:
    filename: str
    content_type: str
    chunks: Iterator[bytes]


def _image_member(zip_file: zipfile.ZipFile, name: str, sink: StreamSink) -> Iterator[bytes]:
    member = zipfile.ZipInfo(name)
    member.external_attr = 0o644 << 16  # a regular file
    try:
        source = default_storage.open(name, "rb")
    except FileNotFoundError:
        raise ExportFailed(f"image {name} is missing") from None
    with source, zip_file.open(member, "w") as target:  # stored: images are compressed already
        while piece := source.read(IMAGE_PIECE):
            target.write(piece)
            yield sink.take()


def _jsonl_zip(pairs: Iterable[ExportedPair], tally: ExportResult) -> Iterator[bytes]:
    """pairs.jsonl first (its rows name the images), then each image once, as the zip is written."""
    sink = StreamSink()
    images: dict[str, None] = {}  # names only, in order of first use
    with zipfile.ZipFile(sink, "w") as zip_file:
        rows = zipfile.ZipInfo(JSONL_NAME)
        rows.compress_type, rows.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
        with zip_file.open(rows, "w", force_zip64=True) as out:  # its size is unknown until the end
            for exported in pairs:
                images[exported.image] = None
                line = trl_jsonl_line(exported.image, exported.question, exported.chosen, exported.rejected)
                out.write(line.encode())
                tally.written += 1
                yield sink.take()
        for name in images:
            yield from _image_member(zip_file, name, sink)
    yield sink.take()


def export_download(iteration: Iteration, fmt: str) -> Download:
    """The export in format `fmt` as a stream of bytes; ExportFailed before the first byte when there is nothing
    to export. A missing image stops the stream midway, which the browser reports as a failed download."""
    if fmt not in FORMATS:
        raise ExportFailed(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    tally = ExportResult()
    pairs = nonempty_pairs(iteration, tally)
    stem = f"iteration-{iteration.number}-{fmt}"
    if fmt == "jsonl":
        name, content_type, chunks = f"{stem}.zip", "application/zip", _jsonl_zip(pairs, tally)
    else:
        name, content_type = f"{stem}.parquet", "application/vnd.apache.parquet"
        chunks = {"trl": trl_parquet_chunks, "rlaifv": rlaifv_chunks}[fmt](_records(iteration, pairs, tally))
    return Download(name, content_type, (chunk for chunk in chunks if chunk))
