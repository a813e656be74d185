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
"""

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.core.files.storage import default_storage
from django.db.models import Exists, OuterRef, Q

from labeling.formats import RlaifvRecord, write_rlaifv, write_trl_dataset, write_trl_jsonl, write_trl_parquet
from webapp.models import Claim, Iteration, PreferencePair, Response, response_scores

FORMATS = ("trl", "rlaifv", "jsonl")
DS_NAME = "RLAIF-V-Studio"


class ExportFailed(ValueError):
    """Nothing to export, or the output cannot be written; the message says why."""


@dataclass(frozen=True)
class ExportResult:
    written: int
    ties_dropped: int
    flipped: int


@dataclass(frozen=True)
class ExportedPair:
    pair: PreferencePair
    chosen: str
    rejected: str


def effective_pairs(iteration: Iteration) -> tuple[list[ExportedPair], int, int]:
    """The iteration's non-excluded pairs ordered by effective verdicts; also how many were ties / flipped."""
    pairs = iteration.pairs.filter(excluded=False).select_related("instruction", "chosen", "rejected").order_by("pk")
    responses = Response.objects.filter(Q(pk__in=pairs.values("chosen")) | Q(pk__in=pairs.values("rejected")))
    scored = response_scores(responses).annotate(has_claims=Exists(Claim.objects.filter(response=OuterRef("pk"))))
    n_rejected = {r.pk: (r.n_rejected if r.has_claims else None) for r in scored}
    kept, seen, ties, flipped = [], set(), 0, 0
    for pair in pairs:
        chosen, rejected = pair.chosen, pair.rejected
        a, b = n_rejected[chosen.pk], n_rejected[rejected.pk]
        if a is not None or b is not None:
            a, b = a or 0, b or 0
            if a == b:
                ties += 1
                continue
            if a > b:
                chosen, rejected = rejected, chosen
                flipped += 1
        if (chosen.pk, rejected.pk) in seen:  # a flip can duplicate the pair stored the other way round
            continue
        seen.add((chosen.pk, rejected.pk))
        kept.append(ExportedPair(pair, chosen.text, rejected.text))
    return kept, ties, flipped


def _records(iteration: Iteration, pairs: list[ExportedPair]) -> Iterator[RlaifvRecord]:
    origin_split = json.dumps({"model": iteration.policy, "feedback_model": iteration.labeler})
    for exported in pairs:
        instruction = exported.pair.instruction
        try:
            with default_storage.open(instruction.image.name, "rb") as file:
                image = file.read()
        except FileNotFoundError:
            raise ExportFailed(f"pair {exported.pair.pk}: image {instruction.image.name} is missing") from None
        made_here = {
            "image_path": instruction.image.name,
            "ds_name": DS_NAME,
            "origin_dataset": instruction.source,
            "origin_split": origin_split,
            "idx": str(exported.pair.pk),
        }
        yield RlaifvRecord(
            image=image,
            question=instruction.question,
            chosen=exported.chosen,
            rejected=exported.rejected,
            **(exported.pair.origin or made_here),
        )


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
    pairs, ties, flipped = effective_pairs(iteration)
    if not pairs:
        raise ExportFailed(f"{iteration} has no pairs to export ({ties} became ties, excluded pairs are left out)")
    writer = {"trl": write_trl_dataset, "rlaifv": write_rlaifv, "jsonl": write_trl_jsonl}[fmt]
    if fmt == "trl" and out.suffix == ".parquet":
        writer = write_trl_parquet
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    _remove(partial)
    try:
        written = writer(_records(iteration, pairs), partial)
        os.replace(partial, out)
    except BaseException:
        _remove(partial)
        raise
    return ExportResult(written=written, ties_dropped=ties, flipped=flipped)
