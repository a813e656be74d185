from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from webapp.transfer.rlaifv_import import RlaifvImportFailed, import_rlaifv


class Command(BaseCommand):
    help = (
        "Import an RLAIF-V dataset parquet file: its instructions and, when rows have chosen/rejected, its pairs "
        "as a new iteration in review. All or nothing: a bad row aborts the import and nothing is written."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="the parquet file (RLAIF-V layout)")
        parser.add_argument("--source", help="source of every instruction (default: the row's origin_dataset)")

    def handle(self, *args, file, source, **options):
        try:
            result = import_rlaifv(file, source=source)
        except RlaifvImportFailed as exc:
            raise CommandError(f"{file}: {exc}; nothing was imported") from None
        pairs = f"{result.pairs} pairs as {result.iteration}" if result.iteration else "no pairs"
        self.stdout.write(f"{file}: {result.created} instructions imported, {result.existing} already there; {pairs}")
