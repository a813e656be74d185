from django.core.management import call_command
from django.core.management.base import BaseCommand

from webapp.models import Iteration


class Command(BaseCommand):
    help = "The demo's iteration 1: the sample instructions on the tiny local models, up to the review gate."

    def handle(self, *args, **options):
        iteration = Iteration.objects.order_by("number").first()
        if iteration:
            self.stdout.write(f"{iteration} already exists ({iteration.status}); not starting another")
            return
        call_command(
            "run_iteration", "--new", "--policy", "tiny-llava", "--labeler", "tiny-llava", "--source", "demo",
            "--n", "10", "--max-new-tokens", "48", "--chunk-size", "4", "--wait", "--poll", "2",
        )  # fmt: skip
