"""DPO trains what the RLAIF-V reference trains: a frozen vision tower, LoRA on the language model only with
the projector trained fully, and the configured LoRA dropout active during training."""

import pytest
import torch
from safetensors.torch import load_file

from labeling.formats import write_trl_dataset
from tests.test_dpo import QUICK, records
from training.dpo import DPOSettings, build_trainer, load_pairs, train_dpo
from training.vlm_parts import language_linear_names, vlm_parts

pytestmark = pytest.mark.slow
VISION, PROJECTOR, LANGUAGE = "vision_tower.", "multi_modal_projector.", "language_model."  # as saved


@pytest.fixture
def pairs(tmp_path):
    write_trl_dataset(records(), tmp_path / "pairs")
    return tmp_path / "pairs"


def changed(before: dict, after: dict, prefix: str) -> list[str]:
    names = [name for name in before if name.startswith(prefix)]
    assert names, f"no weights under {prefix}"
    return [name for name in names if not torch.equal(before[name], after[name])]


def test_full_fine_tuning_leaves_the_vision_tower_as_it_was(tmp_path, tiny_models_dir, pairs):
    policy = tiny_models_dir / "tiny-llava"

    train_dpo(pairs, policy, tmp_path / "out", DPOSettings(**QUICK))

    before, after = load_file(policy / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert changed(before, after, VISION) == []
    assert changed(before, after, PROJECTOR) and changed(before, after, LANGUAGE)


def test_an_option_trains_the_vision_tower_too(tmp_path, tiny_models_dir, pairs):
    policy = tiny_models_dir / "tiny-llava"

    train_dpo(pairs, policy, tmp_path / "out", DPOSettings(**QUICK, train_vision_tower=True))

    before, after = load_file(policy / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    # features come from the second-to-last vision layer, so the first layer is the one that learns
    assert changed(before, after, VISION + "encoder.layers.0.")


def test_lora_adapts_only_the_language_model_and_trains_the_projector_fully(tmp_path, tiny_models_dir, pairs):
    from transformers import AutoModelForImageTextToText

    policy = tiny_models_dir / "tiny-llava"
    settings = DPOSettings(**(QUICK | {"learning_rate": 1e-2}), lora=True, lora_r=4)

    train_dpo(pairs, policy, tmp_path / "adapter", settings)

    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    adapted = {name.split(".lora_")[0] for name in adapter if ".lora_" in name}
    base = AutoModelForImageTextToText.from_pretrained(policy)
    linears = {"base_model.model." + name for name in language_linear_names(base, vlm_parts(base))}
    assert adapted == linears and len(linears) == 14  # 2 layers × q, k, v, o, gate, up, down; no lm_head
    before = load_file(policy / "model.safetensors")
    projector = {
        name.removeprefix("base_model.model.model."): tensor
        for name, tensor in adapter.items()
        if "multi_modal_projector" in name
    }
    assert set(projector) == {name for name in before if name.startswith(PROJECTOR)}
    assert all(not torch.equal(tensor, before[name]) for name, tensor in projector.items())


def test_a_merged_lora_keeps_the_vision_tower_and_changes_the_projector(tmp_path, tiny_models_dir, pairs):
    policy = tiny_models_dir / "tiny-llava"
    settings = DPOSettings(**(QUICK | {"learning_rate": 1e-2}), lora=True, lora_r=4, merge_lora=True)

    train_dpo(pairs, policy, tmp_path / "out", settings)

    before, after = load_file(policy / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert changed(before, after, VISION) == []
    assert changed(before, after, PROJECTOR) and changed(before, after, LANGUAGE)


def test_the_configured_lora_dropout_is_what_trains(tmp_path, tiny_models_dir, pairs):
    from transformers import TrainerCallback

    seen = []

    class ReadDropout(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            lora = [m for name, m in model.named_modules() if ".lora_dropout." in name]
            seen.append((model.training, sorted({(type(m).__name__, m.p) for m in lora}), len(lora)))

    settings = DPOSettings(**QUICK, lora=True, lora_r=4, lora_dropout=0.3)
    trainer = build_trainer(
        load_pairs(pairs), tiny_models_dir / "tiny-llava", tmp_path / "out", settings, [ReadDropout()]
    )

    trainer.train()

    assert seen == [(True, [("Dropout", 0.3)], 14)] * 2


def test_vision_tower_and_lora_together_are_refused():
    with pytest.raises(ValueError, match="train_vision_tower needs full fine-tuning"):
        DPOSettings(lora=True, train_vision_tower=True)


def test_the_parts_are_found_by_role_in_other_families_and_an_unknown_layout_is_named(tiny_models_dir):
    from transformers import AutoModelForCausalLM, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=100)
    vision = dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, patch_size=2, spatial_merge_size=2)
    qwen = Qwen2VLForConditionalGeneration(
        Qwen2VLConfig(
            text_config=text
            | {"num_key_value_heads": 1, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
            vision_config=vision | {"temporal_patch_size": 1},
        )
    )

    parts = vlm_parts(qwen)

    assert (parts.vision, parts.projector, parts.language) == (
        "model.visual",
        "model.visual.merger",
        "model.language_model",
    )
    assert parts.in_vision_tower("model.visual.blocks.0.attn.qkv.weight")
    assert not parts.in_vision_tower("model.visual.merger.mlp.0.weight")  # Qwen's projector lives in its tower
    with pytest.raises(ValueError, match="LlamaForCausalLM: cannot find its vision tower, projector"):
        vlm_parts(AutoModelForCausalLM.from_pretrained(tiny_models_dir / "tiny-lm"))


@pytest.mark.django_db
def test_an_iteration_trains_the_vision_tower_only_when_its_config_asks():
    from tests.factories import IterationFactory
    from webapp.iterations.config import DEFAULT_CONFIG
    from webapp.jobs.train_evaluate import dpo_settings

    assert DEFAULT_CONFIG["train_vision_tower"] is False
    assert dpo_settings(IterationFactory()).cli_args() == []
    assert dpo_settings(IterationFactory(config={"train_vision_tower": True})).cli_args() == ["--train-vision-tower"]
