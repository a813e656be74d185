import json

from django.core.management import call_command
from django.core.management.base import BaseCommand

from webapp.models import Iteration


class Command(BaseCommand):
    help = (
        "The demo's iteration 1: the shapes world's training instructions on its trained tiny policy and labeler, "
        "up to the review gate."
    )

    def handle(self, *args, **options):
        from training.shapes_models import ITERATION_CONFIG, LABELER, POLICY

        iteration = Iteration.objects.order_by("number").first()
        if iteration:
            self.stdout.write(f"{iteration} already exists ({iteration.status}); not starting another")
            return
        call_command(
            "run_iteration", "--new", "--policy", POLICY, "--labeler", LABELER, "--source", "shapes",
            "--config", json.dumps(ITERATION_CONFIG), "--wait", "--poll", "2",
        )  # fmt: skip
