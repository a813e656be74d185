from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from webapp.importing import ImportFailed, import_instructions, read_jsonl


class Command(BaseCommand):
    help = (
        "Import instructions from JSONL (one object a line: image, question, optional source and split). "
        "All or nothing: a bad line aborts the import and nothing is written."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="the JSONL file")
        parser.add_argument("--images", type=Path, required=True, help="folder the `image` paths are relative to")
        parser.add_argument("--source", default="user", help="source for lines that name none (default: user)")

    def handle(self, *args, file, images, source, **options):
        if not images.is_dir():
            raise CommandError(f"--images {images}: not a folder")
        try:
            result = import_instructions(read_jsonl(file), images, default_source=source)
        except ImportFailed as exc:
            raise CommandError(f"{file}: {exc}; nothing was imported") from None
        self.stdout.write(f"{file}: {result.created} instructions imported, {result.skipped} already there")
