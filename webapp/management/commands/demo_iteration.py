import json

from django.core.management import call_command
from django.core.management.base import BaseCommand

from webapp.iterations import lifecycle
from webapp.models import Iteration, IterationStatus

S = IterationStatus


class Command(BaseCommand):
    help = (
        "The demo's iteration 1: the shapes world's training instructions on its trained tiny policy and labeler, "
        "up to the review gate. Run again, it says what it found and carries on from there: an iteration at or "
        "past its gate is served as it is, an interrupted one is followed or resumed, never started over."
    )

    def handle(self, *args, **options):
        from training.shapes_models import ITERATION_CONFIG, LABELER, POLICY

        iteration = Iteration.objects.order_by("number").first()
        if iteration is None:
            call_command(
                "run_iteration", "--new", "--policy", POLICY, "--labeler", LABELER, "--source", "shapes",
                "--config", json.dumps(ITERATION_CONFIG), "--wait", "--poll", "2",
            )  # fmt: skip
            return
        status = iteration.status
        if status == S.REVIEWING:
            self.stdout.write(f"{iteration} already at its review gate; serving it")
            return
        if status in (S.TRAINING, S.EVALUATING, S.DONE):
            self.stdout.write(f"{iteration} is already past its review gate ({status}); serving it")
            return
        if status in (S.FAILED, S.CANCELLED):
            self.stdout.write(f"{iteration} {status} while {iteration.stopped_stage}; resuming it")
            if not lifecycle.resume(iteration):
                self.stdout.write(f"{iteration} could not be resumed; serving it as it is")
                return
        elif status == S.DRAFT:
            self.stdout.write(f"{iteration} is a draft; launching it")
        else:
            self.stdout.write(f"{iteration} is {status} (an earlier run stopped before the gate); following it")
        call_command("run_iteration", "--iteration", str(iteration.number), "--wait", "--poll", "2")
