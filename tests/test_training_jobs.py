"""Train and evaluate as real Celery jobs on the tiny models: the loop closes, and failures register nothing."""

import io
import json
import math
import shutil
import sys

import pytest

from labeling.formats import RlaifvRecord, write_trl_dataset
from labeling.sample_images import sample_image
from tests.factories import IterationFactory
from tests.test_pipeline import CONFIG, new_iteration, wait_for
from training.dpo import DPOSettings, train_dpo
from webapp.iterations import lifecycle
from webapp.iterations.config import strategy
from webapp.jobs.base import Stopped
from webapp.jobs.train_evaluate import TrainingFailed, run_streaming
from webapp.models import Claim, Instruction, Iteration, IterationStatus, Job, JobState, Response, ResponseStatus
from webapp.transfer.exporting import export_pairs

pytestmark = pytest.mark.slow
S = IterationStatus
# Two DPO steps at a learning rate high enough that the policy's samples visibly change.
QUICK_DPO = {"max_steps": 2, "global_batch_size": 2, "warmup_ratio": 0.0, "learning_rate": 1e-2}


@pytest.fixture
def models_dir(processes, tiny_models_dir, tmp_path, settings):
    """A MODELS_DIR of the test's own (the tiny models linked in), so no checkpoint outlives the test."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("tiny-llava", "small-llava", "tiny-lm"):
        (models / name).symlink_to(tiny_models_dir / name)
    settings.MODELS_DIR = models
    processes.env["MODELS_DIR"] = str(models)
    return models


def coco_ground_truth(folder) -> dict:
    """COCO-format ground truth for the two held-out sample photos (moon, clock), with their image files."""
    folder.mkdir()
    images, captions = [], []
    photos = Instruction.objects.filter(split="heldout", question__startswith="Describe").order_by("pk")
    for n, instruction in enumerate(photos, 1):
        name = f"COCO_val2014_{n:012d}.png"
        shutil.copy(instruction.image.path, folder / name)
        images.append({"id": n, "file_name": name, "width": instruction.width, "height": instruction.height})
        captions.append({"id": n, "image_id": n, "caption": "A clock on a wall." if n == 2 else "The moon at night."})
    instances = {"images": images, "categories": [{"id": 85, "name": "clock"}], "annotations": []}
    instances["annotations"] = [{"id": 1, "image_id": 2, "category_id": 85}]
    (folder / "instances.json").write_text(json.dumps(instances))
    (folder / "captions.json").write_text(json.dumps({"images": images, "annotations": captions}))
    return {
        "coco_instances": str(folder / "instances.json"),
        "coco_captions": str(folder / "captions.json"),
        "coco_images": str(folder),
    }


def test_an_approved_iteration_trains_evaluates_and_the_next_one_starts_from_its_checkpoint(
    processes, models_dir, tmp_path, settings
):
    settings.DATA_DIR = tmp_path / "data"  # the ground truth lies where config data files may (webapp/places.py)
    processes.env["DATA_DIR"] = str(settings.DATA_DIR)
    processes.worker()
    one = new_iteration(1, **QUICK_DPO, eval_max_new_tokens=12)
    settings.DATA_DIR.mkdir()
    Iteration.objects.filter(pk=one.pk).update(config=one.config | coco_ground_truth(settings.DATA_DIR / "coco"))
    lifecycle.launch(one)
    wait_for(one, S.REVIEWING, S.FAILED, processes=processes)
    assert one.status == S.REVIEWING, one.error
    excluded = one.pairs.first()
    one.pairs.filter(pk=excluded.pk).update(excluded=True)

    assert lifecycle.approve(one)
    wait_for(one, S.DONE, S.FAILED, processes=processes)

    assert one.status == S.DONE, one.error
    assert one.checkpoint == "checkpoints/iteration-1"
    assert (models_dir / one.checkpoint / "model.safetensors").exists()
    assert [p.name for p in (models_dir / "checkpoints").iterdir()] == ["iteration-1"]  # no partial folder left
    train = Job.objects.get(iteration=one, kind="train")
    assert (train.state, train.done, train.total) == (JobState.SUCCEEDED, 2, 2)
    assert [record["step"] for record in train.log] == [1, 2]
    assert all(math.isfinite(record["loss"]) for record in train.log)
    assert one.metrics["train"]["pairs"] == one.pairs.filter(excluded=False).count()
    assert one.metrics["train"]["steps"] == 2

    evaluation, details = one.metrics["eval"], one.metrics["eval"]["details"]
    assert details["policy"] == one.checkpoint and details["instructions"] == 4
    heldout = details["heldout"]
    assert heldout["answers"] == 4 and heldout["rejected_claims"] <= heldout["claims"]
    assert evaluation["claim_hallucination_rate"] == heldout["claim_hallucination_rate"]
    assert heldout["claims"] == 0 or 0 <= heldout["claim_hallucination_rate"] <= 1
    assert details["chair"]["images_matched"] == 2 and details["chair"]["answers"] == 4
    assert {"chair_s", "chair_i", "object_recall"} <= evaluation.keys()
    answers = (models_dir / details["answers_file"]).read_text().splitlines()
    assert len(answers) == 4

    two = Iteration.objects.create(number=2, policy=Iteration.default_policy(), labeler="tiny-llava", config=CONFIG)
    two.instructions.set(one.instructions.all())
    assert two.policy == one.checkpoint
    lifecycle.launch(two)
    wait_for(two, S.REVIEWING, S.FAILED, processes=processes)

    assert two.status == S.REVIEWING, two.error
    texts = {
        iteration: dict(
            ((r.instruction_id, r.seed), r.text) for r in Response.objects.filter(iteration=iteration).order_by("pk")
        )
        for iteration in (one, two)
    }
    assert texts[one].keys() == texts[two].keys()
    assert texts[one] != texts[two]  # same seeds, new weights


def test_a_failed_training_registers_nothing_and_resume_trains_once_fixed(processes, models_dir):
    processes.worker()
    iteration = new_iteration(1, **QUICK_DPO, eval_max_new_tokens=4)
    lifecycle.launch(iteration)
    wait_for(iteration, S.REVIEWING, S.FAILED, processes=processes)
    (models_dir / "not-a-model").mkdir()  # under MODELS_DIR (webapp/places.py), but no checkpoint: DPO fails
    Iteration.objects.filter(pk=iteration.pk).update(policy="not-a-model")

    lifecycle.approve(iteration)
    wait_for(iteration, S.FAILED, processes=processes)

    assert iteration.stopped_stage == S.TRAINING
    assert iteration.error.startswith("train chunk 0: TrainingFailed: `python -m training dpo` exited with status 1: ")
    assert str(models_dir / "not-a-model") in iteration.error.splitlines()[0]  # the subprocess's own reason
    assert iteration.checkpoint == "" and Iteration.default_policy() == ""
    assert list((models_dir / "checkpoints").iterdir()) == []
    assert Job.objects.get(iteration=iteration, kind="train").state == JobState.FAILED

    Iteration.objects.filter(pk=iteration.pk).update(policy="tiny-llava", config=iteration.config | {"beta": -1})
    assert lifecycle.resume(iteration)
    wait_for(iteration, S.FAILED, processes=processes)
    assert "invalid DPO settings: beta=-1" in iteration.error
    assert iteration.checkpoint == ""

    Iteration.objects.filter(pk=iteration.pk).update(config=iteration.config | {"beta": 0.1})
    assert lifecycle.resume(iteration)
    wait_for(iteration, S.DONE, S.FAILED, processes=processes)
    assert iteration.status == S.DONE, iteration.error
    assert Iteration.default_policy() == "checkpoints/iteration-1"


def test_a_self_reward_iteration_pairs_answers_by_the_policys_implicit_reward(processes, models_dir, tmp_path):
    image = io.BytesIO()
    sample_image("astronaut").save(image, "PNG")
    write_trl_dataset([RlaifvRecord(image.getvalue(), "What is this?", "a man", "a dog")], tmp_path / "pairs")
    trained = models_dir / "checkpoints" / "iteration-1"
    train_dpo(tmp_path / "pairs", models_dir / "tiny-llava", trained, DPOSettings(**QUICK_DPO))
    Iteration.objects.create(
        number=1, policy="tiny-llava", labeler="tiny-llava", status=S.DONE, checkpoint="checkpoints/iteration-1"
    )
    processes.worker()
    two = new_iteration(2, strategy="self_reward")
    Iteration.objects.filter(pk=two.pk).update(policy=Iteration.default_policy())

    lifecycle.launch(two)
    wait_for(two, S.REVIEWING, S.FAILED, processes=processes)

    assert two.status == S.REVIEWING, two.error
    assert not Claim.objects.filter(response__iteration=two).exists()
    assert not Response.objects.filter(iteration=two).exclude(status=ResponseStatus.LABELED).exists()
    rewards = {
        record["response"]: record["reward"]
        for log in Job.objects.filter(iteration=two, kind="label").values_list("log", flat=True)
        for record in log
    }
    assert len(rewards) == Response.objects.filter(iteration=two).count()
    pairs = list(two.pairs.all())
    assert pairs and all(rewards[p.chosen_id] > rewards[p.rejected_id] for p in pairs)
    assert export_pairs(two, "trl", tmp_path / "export").written == len(pairs)


def test_an_unknown_strategy_is_refused():
    assert strategy(Iteration(config={})) == "rlaifv"
    with pytest.raises(ValueError, match="unknown strategy 'no-such-strategy'"):
        strategy(Iteration(config={"strategy": "no-such-strategy"}))


def script(*lines: str) -> list[str]:
    return [sys.executable, "-c", "\n".join(["import sys", "from training.dpo import progress_line", *lines])]


@pytest.mark.django_db
def test_the_child_streams_its_progress_into_the_job_and_its_last_words_into_the_error():
    job = Job.objects.create(iteration=IterationFactory(status=S.TRAINING), kind="train")
    child = script(
        "print(progress_line({'event': 'start', 'step': 0, 'total': 3}))",
        "print(progress_line({'event': 'log', 'step': 1, 'total': 3, 'loss': float('nan'), 'entropy': 6.4}))",
        "print('Traceback ...', file=sys.stderr)",
        "print('ValueError: the pairs are bad', file=sys.stderr)",
        "sys.exit(3)",
    )

    with pytest.raises(TrainingFailed, match=r"exited with status 3: ValueError: the pairs are bad\nTraceback"):
        run_streaming(job, child)

    job.refresh_from_db()
    assert (job.done, job.total) == (1, 3)
    assert job.log == [{"step": 1, "loss": None}]  # a NaN loss is stored as null; other metrics are left out


@pytest.mark.django_db
def test_the_child_is_stopped_when_the_iteration_leaves_training():
    job = Job.objects.create(iteration=IterationFactory(status=S.CANCELLED), kind="train")

    with pytest.raises(Stopped):
        run_streaming(job, script("import time", "time.sleep(60)"))
