import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labeling.shapes import write_instruction_set
from webapp.transfer.importing import ImportFailed, import_instructions, read_jsonl


class Command(BaseCommand):
    help = (
        "Draw shapes-world instructions (source 'shapes', each with its true objects) and import them; the same "
        "seed draws the same images, so loading twice adds nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--train", type=int, default=16, help="training images (default 16)")
        parser.add_argument("--validation", type=int, default=0, help="validation images, to choose settings on")
        parser.add_argument(
            "--heldout", type=int, default=32, help="held-out (test) images for the reported evaluation (default 32)"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--questions-per-image", type=int, default=1, help="instruction wordings per image")

    def handle(self, *args, train, validation, heldout, seed, questions_per_image, **options):
        with tempfile.TemporaryDirectory(prefix="shapes-") as tmp:
            folder = Path(tmp)
            try:
                for split, count in (("train", train), ("validation", validation), ("heldout", heldout)):
                    if count:
                        write_instruction_set(
                            folder, count, split, seed, questions_per_image=questions_per_image, append=True
                        )
                result = import_instructions(read_jsonl(folder / "instructions.jsonl"), folder, "shapes")
            except (ValueError, ImportFailed) as exc:
                raise CommandError(f"shapes world: {exc}; nothing was imported") from None
        self.stdout.write(f"shapes instructions: {result.created} created, {result.skipped} already there")
