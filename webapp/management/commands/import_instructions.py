from contextlib import nullcontext
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from webapp.transfer.archives import ArchiveError, unpacked
from webapp.transfer.importing import ImportFailed, import_instructions, read_jsonl


class Command(BaseCommand):
    help = (
        "Import instructions from JSONL (one object a line: image, question, optional source, split and objects). "
        "All or nothing: a bad line or zip member aborts the import and nothing is written."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="the JSONL file")
        parser.add_argument(
            "--images", type=Path, required=True, help="folder the `image` paths are relative to, or a zip of it"
        )
        parser.add_argument("--source", default="user", help="source for lines that name none (default: user)")

    def handle(self, *args, file, images, source, **options):
        if not images.exists():
            raise CommandError(f"--images {images}: no such folder or zip")
        try:
            with unpacked(images) if images.is_file() else nullcontext(images) as folder:
                result = import_instructions(read_jsonl(file), folder, default_source=source, origin=str(file))
        except ArchiveError as exc:
            raise CommandError(f"{images}: {exc}; nothing was imported") from None
        except ImportFailed as exc:
            raise CommandError(f"{file}: {exc}; nothing was imported") from None
        self.stdout.write(f"{file}: {result.created} instructions imported, {result.skipped} already there")
