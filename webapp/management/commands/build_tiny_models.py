from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Write the tiny local LLaVA checkpoints and the tiny text LLM under MODELS_DIR (no download)."

    def handle(self, *args, **options):
        from labeling.tiny_models import build_tiny_models

        for name, path in build_tiny_models(settings.MODELS_DIR).items():
            self.stdout.write(f"{name}: {path}")
