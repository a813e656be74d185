from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from webapp.accounts import audit
from webapp.models import AuditAction, Iteration
from webapp.transfer.exporting import FORMATS, ExportFailed, export_pairs


class Command(BaseCommand):
    help = (
        "Export an iteration's pairs (not excluded, ordered by effective verdicts) with their images: "
        "trl = a datasets folder (save_to_disk), or parquet when --out ends in .parquet; "
        "jsonl = TRL rows with image paths relative to the file, images written beside it; "
        "rlaifv = the RLAIF-V dataset's parquet layout."
    )

    def add_arguments(self, parser):
        parser.add_argument("--iteration", type=int, required=True, help="the iteration's number")
        parser.add_argument("--format", choices=FORMATS, required=True)
        parser.add_argument("--out", type=Path, required=True, help="where to write; must not exist yet")

    def handle(self, *args, iteration, format, out, **options):
        try:
            chosen = Iteration.objects.get(number=iteration)
        except Iteration.DoesNotExist:
            raise CommandError(f"there is no iteration {iteration}") from None
        try:
            result = export_pairs(chosen, format, out)
        except ExportFailed as exc:
            raise CommandError(str(exc)) from None
        audit.record(AuditAction.EXPORT, iteration=chosen, target=str(out), format=format, pairs=result.written)
        self.stdout.write(
            f"{chosen}: {result.written} pairs written to {out} "
            f"({result.ties_dropped} dropped as ties, {result.flipped} flipped by review)"
        )
