"""Routing by size: each job goes to the queue named by the GPUs its models need (the iteration's engine options),
and the multi-GPU compose file runs one worker per GPU group on those queues."""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.factories import IterationFactory, JobFactory
from tests.test_production import DOCKER, ENV_FILES, needs_compose
from webapp.iterations.dispatch import enqueue, queue_for, queue_name
from webapp.models import JobKind

pytestmark = pytest.mark.django_db
BIG_LABELER = {"labeler": {"tensor_parallel_size": 4}}


def queues(**fields) -> dict[str, str]:
    iteration = IterationFactory(**fields)
    return {kind: queue_for(JobFactory(iteration=iteration, kind=kind)) for kind in JobKind.values}


def test_queues_are_named_by_the_gpus_a_task_needs():
    assert [queue_name(n) for n in (0, 1, 2, 4, 8)] == ["cpu", "gpu", "gpu-x2", "gpu-x4", "gpu-x8"]


def test_a_7b_policy_runs_on_gpu_and_a_34b_labeler_on_gpu_x4():
    assert queues(engine="vllm", splitter="llama-3-8b", config={"engine_options": BIG_LABELER}) == {
        "generate": "gpu",
        "divide": "gpu",
        "label": "gpu-x4",
        "combine": "cpu",
        "train": "gpu",
        "evaluate": "gpu-x4",  # the labeler judges the new policy's answers
        "baseline": "gpu-x4",  # and the starting policy's
    }


def test_without_engine_options_model_work_is_on_gpu_and_the_rest_on_cpu():
    assert queues(engine="transformers", splitter="rule") == {
        "generate": "gpu", "divide": "cpu", "label": "gpu", "combine": "cpu", "train": "gpu", "evaluate": "gpu",
        "baseline": "gpu",
    }  # fmt: skip


def test_the_workers_defaults_route_too(settings):
    settings.ENGINE_OPTIONS = {"transformers": {"device_map": "auto", "gpus": 2}}
    assert queues(engine="transformers")["generate"] == "gpu-x2"


def test_a_policy_spread_over_two_gpus_trains_there_and_a_second_labeler_counts():
    config = {"engine_options": {"policy": {"tensor_parallel_size": 2}}, "second_labeler": "other"}
    routed = queues(engine="vllm", config=config)
    assert (routed["generate"], routed["train"], routed["label"]) == ("gpu-x2", "gpu-x2", "gpu")


def test_a_self_reward_iteration_scores_with_the_policys_gpus_and_divides_on_cpu():
    config = {"strategy": "self_reward", "engine_options": {"policy": {"tensor_parallel_size": 2}}}
    routed = queues(engine="vllm", splitter="llama-3-8b", config=config)
    assert (routed["divide"], routed["label"]) == ("cpu", "gpu-x2")


def test_a_whole_response_iteration_divides_on_cpu_even_with_a_model_splitter():
    routed = queues(engine="vllm", splitter="llama-3-8b", config={"strategy": "whole_response"})
    assert (routed["divide"], routed["label"]) == ("cpu", "gpu")


def test_another_generator_loads_in_the_generate_stage_and_the_policy_still_trains():
    from webapp.iterations.config import models_of

    iteration = IterationFactory(policy="small", config={"generator": "other-model"})
    assert models_of(iteration, JobKind.GENERATE) == [("policy", "other-model")]
    assert models_of(iteration, JobKind.TRAIN) == [("policy", "small")]


def test_the_task_is_sent_to_the_routed_queue(django_capture_on_commit_callbacks, monkeypatch):
    from webapp.celery import app

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, **kwargs: sent.append((name, kwargs["queue"])))
    job = JobFactory(iteration=IterationFactory(engine="vllm", config={"engine_options": BIG_LABELER}), kind="label")
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(job)
    assert sent == [("webapp.tasks.run_job", "gpu-x4")]


@needs_compose
def test_the_multi_gpu_compose_file_runs_one_worker_per_gpu_group_on_the_main_hosts_queues(tmp_path):
    (tmp_path / "docker").mkdir()
    shutil.copy(DOCKER / "compose.gpu-workers.yaml", tmp_path / "docker" / "compose.gpu-workers.yaml")
    for name in ENV_FILES:
        text = (DOCKER / f"{name}.example").read_text()
        text = re.sub(r"^(POSTGRES_PASSWORD|APP_DB_PASSWORD|REDIS_PASSWORD)=.*$", r"\1=secret", text, flags=re.M)
        (tmp_path / "docker" / name).write_text(text)
    run = ["docker-compose", "-f", "docker/compose.gpu-workers.yaml", "config"]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}

    without_host = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True)
    result = subprocess.run(run, cwd=tmp_path, env=env | {"MAIN_HOST": "10.0.0.5"}, capture_output=True, text=True)

    assert without_host.returncode != 0 and "set MAIN_HOST" in without_host.stderr
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    groups = {
        name: (
            service["command"][service["command"].index("-Q") + 1],
            service["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"],
        )
        for name, service in services.items()
    }
    assert groups == {
        "worker-gpu-0": ("gpu", ["0"]),
        "worker-gpu-1": ("gpu", ["1"]),
        "worker-gpu-2": ("gpu", ["2"]),
        "worker-gpu-3": ("gpu", ["3"]),
        "worker-gpu-x4": ("gpu-x4,gpu", ["4", "5", "6", "7"]),
    }
    for service in services.values():
        assert service["environment"]["DATABASE_URL"] == "postgres://studio_app:secret@10.0.0.5:5432/studio"
        assert service["environment"]["CELERY_BROKER_URL"] == "redis://:secret@10.0.0.5:6379/0"
        assert {"media:/data/media:rw", "models:/data/models:rw", "datasets:/data/datasets:ro"} <= set(
            service["volumes"]
        )
        assert service["environment"]["DEBUG"] == "0"  # app.env's production settings reach every worker
    # The main host's volumes, as docker/compose.yaml's project (COMPOSE_PROJECT_NAME of docker/.env) names them.
    volumes = yaml.safe_load(result.stdout)["volumes"]
    assert {name: volume["name"] for name, volume in volumes.items()} == {
        "media": "rlaifv-studio_media",
        "models": "rlaifv-studio_models",
        "datasets": "rlaifv-studio_datasets",
    }


def test_a_model_served_elsewhere_still_runs_on_a_gpu_worker_which_holds_the_api_tokens():
    assert queues(engine="openai")["label"] == "gpu"
