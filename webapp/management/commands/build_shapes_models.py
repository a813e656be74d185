import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Write the shapes world's trained tiny models (shapes-policy, shapes-labeler) under MODELS_DIR: from the "
        "committed weights (seconds), or --retrain them from their seeds (minutes)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--retrain", action="store_true", help="train both models from their seeds")
        parser.add_argument(
            "--evaluate", action="store_true", help="measure them on validation images (never on the test split)"
        )
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, retrain, evaluate, seed, **options):
        from training.shapes_models import LABELER, POLICY, RECORD_FILE, build_shapes_models  # torch: when it runs

        # A checkpoint's record is written last, so its presence means the checkpoint is whole.
        present = [name for name in (LABELER, POLICY) if (Path(settings.MODELS_DIR) / name / RECORD_FILE).exists()]
        if len(present) == 2 and not (retrain or evaluate or seed):
            self.stdout.write(f"shapes models: {', '.join(present)} already under {settings.MODELS_DIR}; kept")
            return

        def report(record: dict) -> None:
            if "validation" in record:
                self.stdout.write(json.dumps(record))

        result = build_shapes_models(settings.MODELS_DIR, seed=seed, retrain=retrain, evaluate=evaluate, report=report)
        names = ", ".join(sorted(result["paths"]))
        self.stdout.write(f"shapes models: {names} under {settings.MODELS_DIR} in {result['seconds']['total']} s")
