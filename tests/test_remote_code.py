"""A model folder that ships its own Python code loads only where staff marked it as trusted.

The fixture (tests/fixtures/remote_code/) is a LLaVA registered under a model type transformers does not know,
named by `auto_map` in the folder's config.json, as OmniLMM and MiniCPM-V checkpoints name theirs.
"""

import json
import shutil
import sys
import types
from pathlib import Path

import pytest
from safetensors.torch import save_file
from transformers import LlavaForConditionalGeneration

from labeling.backends.base import PolarQuery
from labeling.backends.transformers_backend import TransformersBackend
from labeling.backends.vllm_backend import VLLMBackend
from labeling.formats import RlaifvRecord, write_trl_dataset
from labeling.remote_code import MARKER, UntrustedRemoteCode
from labeling.sample_images import save_sample_images
from training.dpo import DPOSettings, train_dpo

FIXTURE = Path(__file__).parent / "fixtures" / "remote_code"
QUESTION = "Is there a man in the image? Please answer yes or no."


@pytest.fixture
def custom_model(tiny_models_dir, tmp_path):
    """tiny-llava's weights and processor under the fixture's custom architecture, not marked.

    The weights are written with the module's own names: transformers renames LLaVA's saved keys by model type,
    which a custom type does not share.
    """
    folder = tmp_path / "custom-llava"
    shutil.copytree(tiny_models_dir / "tiny-llava", folder)
    weights = LlavaForConditionalGeneration.from_pretrained(folder).state_dict()
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    for code in FIXTURE.glob("*.py"):
        shutil.copy(code, folder)
    config = json.loads((folder / "config.json").read_text())
    config |= {
        "model_type": "tiny_remote_llava",
        "architectures": ["TinyRemoteLlavaForConditionalGeneration"],
        "auto_map": {
            "AutoConfig": "configuration_tiny_remote_llava.TinyRemoteLlavaConfig",
            "AutoModelForImageTextToText": "modeling_tiny_remote_llava.TinyRemoteLlavaForConditionalGeneration",
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def images(tmp_path):
    return save_sample_images(tmp_path / "images", ["astronaut", "coffee"])


def test_it_refuses_an_unmarked_folder_naming_it_and_how_to_trust_it(custom_model):
    with pytest.raises(UntrustedRemoteCode) as error:
        TransformersBackend(custom_model)

    message = str(error.value)
    assert "'custom-llava'" in message and MARKER in message and "worker's rights" in message


def test_a_marked_folder_runs_its_code_and_answers_yes_no(custom_model, tiny_models_dir, images):
    (custom_model / MARKER).touch()
    queries = [PolarQuery(image, QUESTION) for image in images]

    engine = TransformersBackend(custom_model)

    assert type(engine.model).__name__ == "TinyRemoteLlavaForConditionalGeneration"
    # The same weights as tiny-llava under another class name: the same verdicts.
    assert engine.yes_no(queries) == TransformersBackend(tiny_models_dir / "tiny-llava").yes_no(queries)


def test_dpo_trains_a_marked_folder_into_a_marked_checkpoint(custom_model, images, tmp_path):
    (custom_model / MARKER).touch()
    pairs = [RlaifvRecord(images[0].read_bytes(), "Who is there?", "a person", "a red dog", "a.png")]
    write_trl_dataset(pairs, tmp_path / "pairs")
    one_step = DPOSettings(max_steps=1, global_batch_size=1, warmup_ratio=0.0, learning_rate=1e-2)

    train_dpo(tmp_path / "pairs", custom_model, tmp_path / "out", one_step)

    assert (tmp_path / "out" / MARKER).is_file()
    assert type(TransformersBackend(tmp_path / "out").model).__name__ == "TinyRemoteLlavaForConditionalGeneration"


def test_vllm_gets_trust_remote_code_for_a_marked_folder_only(custom_model, tiny_models_dir, monkeypatch):
    started = []
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=lambda **kwargs: started.append(kwargs)))

    with pytest.raises(UntrustedRemoteCode):
        VLLMBackend(str(custom_model)).engine(str(custom_model))
    (custom_model / MARKER).touch()
    VLLMBackend(str(custom_model)).engine(str(custom_model))
    VLLMBackend(str(tiny_models_dir / "tiny-llava")).engine(str(tiny_models_dir / "tiny-llava"))

    assert [kwargs.get("trust_remote_code") for kwargs in started] == [True, None]
