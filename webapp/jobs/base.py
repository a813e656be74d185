"""What every job body shares: the all-or-nothing commit of a chunk's rows, text cleaning, and an instruction as
the labeling library sees it.

Every job is idempotent: it computes only what is missing (unique constraints + skipping rows that exist),
writes its rows and marks its job done in one transaction (`commit_chunk`), and writes nothing if the
iteration left the job's stage meanwhile (cancelled, failed). Running a job twice (a retry, a re-queued
job) gives the same rows as once.
"""

from collections.abc import Callable
from pathlib import Path

from django.db import transaction

from labeling.generate import Instruction as LabelingInstruction
from labeling.generate import instruction_key
from webapp.iterations import counts
from webapp.models import Instruction, Iteration, Job, JobKind


class Stopped(Exception):
    """The iteration left the job's stage (cancelled, failed) while the job ran: its rows are not written."""


# Jobs that add answers, claims, verdicts, scores or pairs: the dashboard's counts follow what they write.
COUNTED_JOBS = {JobKind.GENERATE: False, JobKind.DIVIDE: False, JobKind.LABEL: False, JobKind.COMBINE: True}


def commit_chunk(job: Job, write: Callable[[], object]) -> None:
    """Write the chunk's rows and mark the job done atomically, unless the iteration has moved on; the
    iteration's counts change by what the write changed in the chunk's instructions, in the same transaction."""
    with transaction.atomic():
        if not Iteration.objects.filter(pk=job.iteration_id, status=job.stage).exists():
            raise Stopped
        if job.kind not in COUNTED_JOBS:
            write()
        else:
            # combine sees the whole iteration: count all of it rather than name every instruction
            instructions = None if COUNTED_JOBS[job.kind] else job.instruction_ids
            before = counts.tally(job.iteration, instructions)
            write()
            counts.add(job.iteration, counts.tally(job.iteration, instructions) - before)
        job.succeed()


def seed_key(instruction: Instruction) -> str:
    """What an instruction's answers' seeds are drawn from: its content, so a re-import draws the same answers."""
    return instruction_key(instruction.image_sha256, instruction.question)


def for_labeling(instruction: Instruction) -> LabelingInstruction:
    return LabelingInstruction(
        instruction.pk, Path(instruction.image.path), instruction.question, seed_key(instruction)
    )


def clean_text(text: str) -> str:
    """Model output as stored: PostgreSQL text columns refuse NUL characters."""
    return text.replace("\x00", "").strip()
