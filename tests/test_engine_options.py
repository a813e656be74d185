"""Engine options: checked with clear errors (the library, the new-iteration form, a draft in the admin, the
settings), merged over the workers' defaults per role, handed to the backends, shown on the iteration page."""

import json
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from labeling.engine_options import backend_options, check_options, gpus_needed
from tests.factories import InstructionFactory, IterationFactory
from webapp.iterations.config import engine_options
from webapp.models import Iteration

NEW = {"policy": "llava-1.5-7b", "labeler": "llava-next-34b", "splitter": "rule", "engine": "vllm",
       "source": "coco", "split": "train", "n": 10, "temperature": 0.7, "top_p": 1.0, "max_new_tokens": 512,
       "seed": 0, "pairs_per_instruction": 2, "beta": 0.1, "learning_rate": 5e-7, "epochs": 1}  # fmt: skip
PAPER = {
    "policy": {"dtype": "bfloat16", "max_model_len": 4096},
    "labeler": {"tensor_parallel_size": 4, "gpu_memory_utilization": 0.85, "max_num_seqs": 128},
}


def test_it_takes_vllms_engine_arguments_and_the_transformers_loading_options():
    assert check_options("vllm", PAPER["labeler"]) == PAPER["labeler"]
    options = {"dtype": "bfloat16", "device_map": "auto", "attn_implementation": "sdpa", "gpus": 2}
    assert check_options("transformers", options) == options
    assert backend_options("transformers", options) == {
        k: options[k] for k in ("dtype", "device_map", "attn_implementation")
    }
    assert backend_options("vllm", PAPER["labeler"] | {"memory_gb": 70}) == PAPER["labeler"]
    for engine in ("transformers", "vllm", "openai"):  # every backend's constructor takes it
        assert backend_options(engine, check_options(engine, {"yes_no_variants": True})) == {"yes_no_variants": True}


@pytest.mark.parametrize(
    ("engine", "options", "error"),
    [
        ("vllm", {"gpu_memory_utilization": 1.5}, "gpu_memory_utilization=1.5 must be a number above 0 and at most 1"),
        ("vllm", {"tensor_parallel_size": 0}, "tensor_parallel_size=0 must be a whole number of at least 1"),
        ("vllm", {"max_model_len": "4k"}, "max_model_len='4k' must be a whole number"),
        ("vllm", {"dtype": "fp4"}, "dtype='fp4' must be one of auto, float16, bfloat16, float32"),
        ("vllm", {"device_map": "auto"}, "engine vllm has no option 'device_map' (it takes: gpus, memory_gb, dtype"),
        ("vllm", {"tensor_parallel_size": 4, "gpus": 2}, "gpus=2 must equal tensor_parallel_size=4"),
        ("transformers", {"attn_implementation": "flash"}, "must be one of eager, sdpa, flash_attention_2"),
        ("transformers", {"max_num_seqs": 8}, "engine transformers has no option 'max_num_seqs'"),
        ("openai", {"dtype": "bfloat16"}, "engine openai has no option 'dtype' (it takes: yes_no_variants)"),
        ("openai", {"yes_no_variants": "yes"}, "engine option yes_no_variants='yes' must be true or false"),
    ],
)
def test_a_bad_option_is_refused_naming_it(engine, options, error):
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        check_options(engine, options)


def test_a_model_needs_the_gpus_it_is_spread_over():
    assert gpus_needed("vllm", {}) == 1
    assert gpus_needed("vllm", {"tensor_parallel_size": 4}) == 4
    assert gpus_needed("transformers", {"device_map": "auto", "gpus": 2}) == 2
    assert gpus_needed("openai", {}) == 0


@pytest.mark.django_db
def test_an_iterations_options_go_over_the_workers_defaults_per_role(settings):
    settings.ENGINE_OPTIONS = {"vllm": {"gpu_memory_utilization": 0.9, "dtype": "float16"}}
    iteration = IterationFactory(engine="vllm", config={"engine_options": PAPER})

    assert engine_options(iteration, "labeler") == {"gpu_memory_utilization": 0.85, "dtype": "float16"} | {
        "tensor_parallel_size": 4, "max_num_seqs": 128,
    }  # fmt: skip
    assert engine_options(iteration, "policy") == {
        "gpu_memory_utilization": 0.9,
        "dtype": "bfloat16",
        "max_model_len": 4096,
    }
    assert engine_options(iteration, "splitter") == {"gpu_memory_utilization": 0.9, "dtype": "float16"}
    # evaluate runs an openai iteration's checkpoint on transformers: none of the openai options apply there
    assert engine_options(iteration, "policy", engine="transformers") == {}


@pytest.mark.django_db
def test_staff_give_engine_options_in_the_new_iteration_form(client, bob, install):
    install("llava-1.5-7b", "llava-next-34b")
    InstructionFactory.create_batch(2, source="coco")
    client.force_login(bob)

    response = client.post(reverse("iteration-new"), NEW | {"engine_options": json.dumps(PAPER)})

    assert response.status_code == 302, response.context["form"].errors
    assert Iteration.objects.get().config["engine_options"] == PAPER


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (
            {"labeler": {"tensor_parallel_size": -4}},
            "engine_options[labeler]: engine option tensor_parallel_size=-4 must",
        ),
        ({"critic": {}}, "engine_options has no role &#x27;critic&#x27; (roles: policy, labeler, splitter)"),
        ({"policy": {"device_map": "auto"}}, "engine vllm has no option &#x27;device_map&#x27;"),
        ([1], "engine_options must be a JSON object by role"),
    ],
)
@pytest.mark.django_db
def test_the_form_refuses_bad_engine_options_naming_the_problem(client, bob, value, error):
    InstructionFactory.create_batch(2, source="coco")
    client.force_login(bob)

    response = client.post(reverse("iteration-new"), NEW | {"engine_options": json.dumps(value)})

    assert response.status_code == 200 and not Iteration.objects.exists()
    assert error in response.content.decode()


@pytest.mark.django_db
def test_the_admin_checks_a_drafts_engine_options_against_its_engine(client, bob):
    iteration = IterationFactory(number=1)
    client.force_login(bob)
    url = reverse("admin:webapp_iteration_change", args=[iteration.pk])
    change = {"policy": "tiny-llava", "labeler": "tiny-llava", "splitter": "rule", "engine": "transformers"}

    bad = client.post(url, change | {"config": json.dumps({"engine_options": {"labeler": {"max_num_seqs": 8}}})})
    good = client.post(url, change | {"engine": "vllm", "config": json.dumps({"engine_options": PAPER})})

    assert "engine transformers has no option &#x27;max_num_seqs&#x27;" in bad.content.decode()
    assert good.status_code == 302
    iteration.refresh_from_db()
    assert iteration.engine == "vllm" and iteration.config["engine_options"] == PAPER


@pytest.mark.django_db
def test_the_iteration_page_shows_each_models_options_and_queue(client, alice, settings):
    settings.ENGINE_OPTIONS = {"vllm": {"gpu_memory_utilization": 0.9}}
    IterationFactory(number=1, engine="vllm", policy="llava-1.5-7b", labeler="llava-next-34b",
                     config={"engine_options": PAPER})  # fmt: skip
    client.force_login(alice)

    page = client.get(reverse("iteration", args=[1])).content.decode()

    labeler = (
        "<code>gpu_memory_utilization=0.85</code>, <code>max_num_seqs=128</code>, <code>tensor_parallel_size=4</code>"
    )
    assert f"labeler (llava-next-34b): {labeler}" in page
    assert 'label <code data-queue="label">gpu-x4</code>' in page
    assert 'generate <code data-queue="generate">gpu</code>' in page
    assert 'divide <code data-queue="divide">cpu</code>' in page  # the rule splitter


def test_the_settings_refuse_bad_default_options_at_start_up():
    env = {"ENGINE_OPTIONS": '{"vllm": {"gpu_memory_utilization": 2}}', "DEBUG": "1", "PATH": "/usr/bin:/bin"}
    env["DJANGO_SETTINGS_MODULE"] = "webapp.settings"
    command = [sys.executable, "-c", "import django; django.setup()"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert (
        "ENGINE_OPTIONS: engine option gpu_memory_utilization=2 must be a number above 0 and at most 1" in result.stderr
    )


@pytest.mark.django_db
def test_run_iteration_refuses_bad_engine_options_before_creating_anything():
    InstructionFactory()
    config = json.dumps({"engine_options": {"labeler": {"gpu_memory_utilization": 0}}})
    with pytest.raises(
        CommandError, match=r"--config: engine_options\[labeler\]: engine option gpu_memory_utilization=0"
    ):
        call_command(
            "run_iteration", "--new", "--policy", "p", "--labeler", "l", "--engine", "vllm", "--config", config
        )
    assert not Iteration.objects.exists()


@pytest.mark.django_db
def test_the_new_iteration_form_checks_the_dpo_settings_among_the_other_settings(client, bob, install):
    install("llava-1.5-7b", "llava-next-34b")
    InstructionFactory.create_batch(2, source="coco")
    client.force_login(bob)

    bad = {"sft_weight": 1.0, "sft_scale": "median"}
    response = client.post(reverse("iteration-new"), NEW | {"other_settings": json.dumps(bad)})

    assert response.status_code == 200
    assert "sft_scale=&#x27;median&#x27; (one of sum, mean)" in response.content.decode()
    good = {"sft_weight": 1.0, "sft_scale": "mean"}
    response = client.post(reverse("iteration-new"), NEW | {"other_settings": json.dumps(good)})
    assert response.status_code == 302, response.context["form"].errors
    assert Iteration.objects.get().config["sft_scale"] == "mean"
