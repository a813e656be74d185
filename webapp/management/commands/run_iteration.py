import json
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from webapp.iterations import lifecycle
from webapp.iterations.config import check_engine_options
from webapp.iterations.creating import create_iteration
from webapp.iterations.forms import NOT_TRAINED_ON
from webapp.iterations.progress import iteration_progress
from webapp.jobs.watchdog import requeue_stale_jobs
from webapp.models import Instruction, Iteration, IterationStatus, Split

FINAL = {IterationStatus.REVIEWING, IterationStatus.DONE, IterationStatus.FAILED, IterationStatus.CANCELLED}


SHOW_EVERY = 15  # seconds between progress lines while the status stays the same


class Command(BaseCommand):
    help = (
        "Launch an iteration (an existing draft, or --new) on the Celery workers, or --approve one at its review "
        "gate (train, then evaluate); with --wait follow it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--iteration", type=int, help="number of an existing draft iteration")
        parser.add_argument("--new", action="store_true", help="create a new iteration from the options below")
        parser.add_argument("--policy", help="policy model (default: the checkpoint of the latest done iteration)")
        parser.add_argument("--labeler", help="labeler model")
        parser.add_argument("--splitter", default="rule", help="'rule' or the path of the divide LLM")
        parser.add_argument("--engine", default="transformers", choices=Iteration.Engine.values)
        parser.add_argument("--source", help="only instructions of this source")
        parser.add_argument("--split", default="train", help="instructions of this split (default: train)")
        parser.add_argument("--n", type=int, help="candidates per instruction (default 10)")
        parser.add_argument("--max-new-tokens", type=int, help="default 512")
        parser.add_argument("--chunk-size", type=int, help="instructions per job (default CHUNK_SIZE)")
        parser.add_argument("--config", type=json.loads, default={}, help="more config keys, as a JSON object")
        parser.add_argument("--approve", action="store_true", help="approve --iteration N's review gate: train it")
        parser.add_argument("--wait", action="store_true", help="follow progress until the review gate or an end")
        parser.add_argument("--poll", type=float, default=2.0, help="seconds between progress lines")

    def handle(self, *args, **opts):
        if opts["new"] == bool(opts["iteration"]):
            raise CommandError("give exactly one of --iteration N or --new")
        if not isinstance(opts["config"], dict):
            raise CommandError("--config must be a JSON object, e.g. '{\"learning_rate\": 3e-05}'")
        iteration = self._create(opts) if opts["new"] else self._existing(opts["iteration"])
        if opts["approve"]:
            if not lifecycle.approve(iteration):
                raise CommandError(f"{iteration} is {iteration.status}, not at its review gate")
            self.stdout.write(f"approved {iteration}: training")
        elif iteration.status == IterationStatus.DRAFT:
            lifecycle.launch(iteration)
            self.stdout.write(f"launched {iteration} on {iteration.instructions.count()} instructions")
        if opts["wait"]:
            self._follow(iteration, opts["poll"])

    def _existing(self, number):
        try:
            return Iteration.objects.get(number=number)
        except Iteration.DoesNotExist:
            raise CommandError(f"there is no iteration {number}") from None

    def _create(self, opts):
        policy = opts["policy"] or Iteration.default_policy()
        if not policy or not opts["labeler"]:
            raise CommandError("--new needs --policy (no earlier checkpoint to default to) and --labeler")
        if opts["split"] != Split.TRAIN:
            raise CommandError(NOT_TRAINED_ON)
        instructions = Instruction.objects.filter(split=opts["split"])
        if opts["source"]:
            instructions = instructions.filter(source=opts["source"])
        if not instructions.exists():
            raise CommandError("no instructions match --source/--split")
        config = opts["config"] | {k: opts[k] for k in ("n", "max_new_tokens", "chunk_size") if opts[k] is not None}
        if "engine_options" in config:
            try:
                config["engine_options"] = check_engine_options(opts["engine"], config["engine_options"])
            except ValueError as error:
                raise CommandError(f"--config: {error}") from None
        return create_iteration(
            instructions=instructions,
            policy=policy,
            labeler=opts["labeler"],
            splitter=opts["splitter"],
            engine=opts["engine"],
            config=config,
        )

    def _follow(self, iteration, poll):
        last_status, last_shown = None, 0.0
        while True:
            try:
                requeue_stale_jobs()
                iteration.refresh_from_db()
                stages = "  ".join(
                    f"{s.kind} {s.counted} {s.time_left}".rstrip() for s in iteration_progress(iteration.pk)
                )
            except (OperationalError, InterfaceError) as exc:
                # The database went away (a restart, a failover): keep following once it is back.
                self.stderr.write(f"database unavailable, retrying: {str(exc).strip()[:200]}")
                connection.close()
                time.sleep(poll)
                continue
            # A line when the status changes, else every SHOW_EVERY seconds (every poll made ~170 lines a demo).
            if (
                iteration.status != last_status
                or time.monotonic() - last_shown >= SHOW_EVERY
                or (iteration.status in FINAL)
            ):
                self.stdout.write(f"{iteration}: {iteration.status}  {stages}")
                last_status, last_shown = iteration.status, time.monotonic()
            if iteration.status in FINAL:
                break
            close_old_connections()
            time.sleep(poll)
        if iteration.status == IterationStatus.FAILED:
            raise CommandError(f"{iteration} failed: {iteration.error}")
