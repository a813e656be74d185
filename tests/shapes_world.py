"""The shapes world on real workers, shared by the slow tests that run its iterations through the app."""

from pathlib import Path

from django.core.management import call_command

from tests.test_pipeline import wait_for
from training.shapes_models import LABELER, POLICY
from webapp.iterations import lifecycle
from webapp.iterations.creating import create_iteration
from webapp.models import Instruction, Iteration, IterationStatus


def install_shapes_world(processes, tmp_path: Path, settings, train: int, heldout: int) -> Path:
    """The trained shapes models in the test's MODELS_DIR (the workers' too) and the world's instructions."""
    models = tmp_path / "models"
    settings.MODELS_DIR = models
    processes.env["MODELS_DIR"] = str(models)
    call_command("build_shapes_models")
    call_command("load_shapes", "--train", str(train), "--heldout", str(heldout))
    return models


def launched_to_gate(processes, config: dict, timeout: float) -> Iteration:
    """An iteration of the shapes policy and labeler on the training pictures, run by the workers to its gate."""
    iteration = create_iteration(
        policy=POLICY,
        labeler=LABELER,
        config=config,
        instructions=Instruction.objects.filter(source="shapes", split="train"),
    )
    lifecycle.launch(iteration)
    wait_for(iteration, IterationStatus.REVIEWING, IterationStatus.FAILED, processes=processes, timeout=timeout)
    assert iteration.status == IterationStatus.REVIEWING, iteration.error
    return iteration
