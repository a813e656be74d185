from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Write each model family's tiny checkpoint, small-llava and the tiny text LLM under MODELS_DIR (offline)."

    def handle(self, *args, **options):
        from labeling.tiny_models import build_tiny_models

        for name, path in build_tiny_models(settings.MODELS_DIR).items():
            self.stdout.write(f"{name}: {path}")
