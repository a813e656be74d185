from django.core.management.base import BaseCommand

from webapp.transfer.samples import load_samples


class Command(BaseCommand):
    help = "Import the bundled sample instructions (photos from scikit-image) as source 'demo'; idempotent."

    def handle(self, *args, **options):
        result = load_samples()
        self.stdout.write(f"sample instructions: {result.created} created, {result.skipped} already there")
