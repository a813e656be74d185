"""A browser upload's import, run by a CPU worker: the zip unpacked safely, then `import_instructions`.

The same validation as `manage.py import_instructions FILE --images ZIP` (webapp/transfer/archives.py, then
webapp/transfer/importing.py): all or nothing. The import's outcome is written in the import's own transaction, so a
duplicate delivery of the task finds it done, and a crash before the commit leaves it to run again.

While it runs, the upload shows life in `heartbeat_at` (a heartbeat thread, and each progress write), so the
watchdog (webapp.jobs.watchdog) re-sends it only when its worker died or its message was lost. A re-sent upload
whose first worker was alive after all runs twice side by side: their writing phases take turns (every import
holds the image-writing lock, webapp/transfer/image_writes.py) and the second, finding the upload done when it
would record its outcome, rolls back, so nothing is imported twice and no image of the first is deleted.
"""

import time

from django.core.files.storage import default_storage
from django.utils import timezone

from webapp import limits
from webapp.accounts.actors import Actor
from webapp.jobs.heartbeat import heartbeat
from webapp.models import ImportState, InstructionImport
from webapp.transfer.archives import ArchiveError, unpacked
from webapp.transfer.importing import ImportFailed, ImportResult, import_instructions, read_jsonl

PROGRESS_EVERY = 0.5  # seconds between progress writes while lines are checked
FINAL = (ImportState.SUCCEEDED, ImportState.FAILED)


class AlreadyDone(Exception):
    """Another delivery of the task finished this import first: this one's rows are rolled back."""


def _reporter(import_id: int):
    last = 0.0

    def report(phase: str, done: int, total: int) -> None:
        nonlocal last
        if phase == "checking" and done < total and time.monotonic() - last < PROGRESS_EVERY:
            return
        last = time.monotonic()
        InstructionImport.objects.filter(pk=import_id, state=ImportState.RUNNING).update(
            phase=phase, done=done, total=total, heartbeat_at=timezone.now()
        )

    return report


def _succeed(import_id: int):
    def record(result: ImportResult) -> None:
        won = InstructionImport.objects.filter(pk=import_id, state=ImportState.RUNNING).update(
            state=ImportState.SUCCEEDED, phase="", created=result.created, skipped=result.skipped,
            error="", finished_at=timezone.now(),
        )  # fmt: skip
        if not won:
            raise AlreadyDone

    return record


def _delete_files(upload: InstructionImport) -> None:
    for name in (upload.jsonl.name, upload.images.name):
        if name:
            default_storage.delete(name)


def run_import(import_id: int, worker: str = "") -> None:
    """Import an upload; a bad line or zip member fails it with an error naming it. Other errors propagate to
    the task, which retries the transient ones and calls `fail_import` for the rest."""
    upload = InstructionImport.objects.filter(pk=import_id).select_related("uploaded_by").first()
    if upload is None or upload.state in FINAL:
        return
    unfinished = InstructionImport.objects.filter(pk=import_id).exclude(state__in=FINAL)
    now = timezone.now()
    if not unfinished.update(state=ImportState.RUNNING, phase="unpacking", done=0, worker=worker, heartbeat_at=now):
        return  # another delivery finished it since
    try:
        with heartbeat(InstructionImport.objects.filter(pk=import_id, state=ImportState.RUNNING)):
            with default_storage.open(upload.jsonl.name, "rb") as file:
                lines = read_jsonl(file)
            with default_storage.open(upload.images.name, "rb") as archive, unpacked(archive) as images:
                import_instructions(
                    lines, images, upload.source, progress=_reporter(import_id),
                    commit_with=_succeed(import_id), origin=f"{upload} ({upload.jsonl_name})",
                    actor=Actor.of_user(upload.uploaded_by),
                )  # fmt: skip
    except ArchiveError as exc:
        fail_import(import_id, f"{upload.images_name}: {exc}")
    except ImportFailed as exc:
        fail_import(import_id, f"{upload.jsonl_name}: {exc}")
    except AlreadyDone:
        return
    else:
        _delete_files(upload)


def fail_import(import_id: int, error: BaseException | str) -> None:
    """The import failed for good: say why, and delete its files (nothing of it was imported)."""
    if isinstance(error, BaseException):
        error = f"{type(error).__name__}: {error}"
    failed = InstructionImport.objects.filter(pk=import_id).exclude(state__in=FINAL)
    if failed.update(state=ImportState.FAILED, phase="", error=error[: limits.ERROR], finished_at=timezone.now()):
        _delete_files(InstructionImport.objects.get(pk=import_id))
