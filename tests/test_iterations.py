"""Creating iterations: one service for every entry point, numbers distinct however many create at once."""

import time

import pytest

from tests.factories import InstructionFactory
from webapp.iterations.creating import create_iteration
from webapp.models import Iteration, IterationStatus

CREATOR = """
import sys, time
import django
django.setup()
from webapp.iterations.creating import create_iteration
from webapp.models import Instruction
start_at, count = float(sys.argv[1]), int(sys.argv[2])
time.sleep(max(start_at - time.time(), 0))
for _ in range(count):
    create_iteration(instructions=Instruction.objects.all(), policy="tiny-llava", labeler="tiny-llava")
"""


@pytest.mark.django_db
def test_it_numbers_iterations_after_the_last_and_sets_their_instructions(bob):
    instructions = [InstructionFactory(), InstructionFactory()]
    first = create_iteration(instructions=instructions, policy="p", labeler="l", created_by=bob)
    second = create_iteration(instructions=instructions[:1], policy="p", labeler="l", status=IterationStatus.REVIEWING)
    assert (first.number, first.status, first.created_by) == (1, IterationStatus.DRAFT, bob)
    assert (second.number, second.status) == (2, IterationStatus.REVIEWING)
    assert set(first.instructions.all()) == set(instructions)
    assert list(second.instructions.all()) == instructions[:1]


@pytest.mark.django_db
def test_another_constraint_failing_is_not_mistaken_for_a_lost_race():
    with pytest.raises(Exception, match="iteration_engine_valid"):
        create_iteration(instructions=[], policy="p", labeler="l", engine="no-such-engine")
    assert not Iteration.objects.exists()


def test_two_processes_creating_at_once_get_distinct_numbers(processes):
    InstructionFactory()
    start_at = time.time() + 6  # both have set Django up by then, and race from the same moment
    creators = [processes.start(f"creator-{n}", ["-c", CREATOR, str(start_at), "15"]) for n in (1, 2)]
    for creator in creators:
        assert creator.wait(120) == 0, processes.log(creator.name)
    numbers = sorted(Iteration.objects.values_list("number", flat=True))
    assert numbers == list(range(1, 31))
    assert all(it.instructions.count() == 1 for it in Iteration.objects.all())


@pytest.mark.django_db
def test_run_iteration_creates_through_the_service_with_extra_config_and_approves_only_at_the_gate():
    from django.core.management import CommandError, call_command

    InstructionFactory()
    call_command("run_iteration", "--new", "--policy", "p", "--labeler", "coin-flip", "--n", "4",
                 "--config", '{"learning_rate": 3e-05, "sft_weight": 1.0}')  # fmt: skip
    iteration = Iteration.objects.get()
    assert (iteration.number, iteration.status) == (1, IterationStatus.GENERATING)
    assert iteration.config == {"learning_rate": 3e-05, "sft_weight": 1.0, "n": 4}
    with pytest.raises(CommandError, match="Iteration 1 is generating, not at its review gate"):
        call_command("run_iteration", "--iteration", "1", "--approve")
    with pytest.raises(CommandError, match="--config must be a JSON object"):
        call_command("run_iteration", "--new", "--policy", "p", "--labeler", "l", "--config", "[1]")
