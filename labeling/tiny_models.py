"""Tiny, real checkpoints built offline, for tests and the demo (no model hub here).

They are randomly initialised, so they answer with random vocabulary words, but they are genuine
checkpoints of each family in `FAMILIES` (LLaVA-1.5 here, the others in `labeling/tiny_families/`) and a
Llama text model: every code path (processor, KV cache, sampling, DPO) runs as on a real model, and each
folder is saved the standard way (model, processor files, chat template) and loads with the Auto classes.
Initialisation is seeded, so building twice gives identical weights and tests can compare numbers.
"""

from collections.abc import Sequence
from pathlib import Path

from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from labeling.tiny_families.gemma3 import build_gemma3
from labeling.tiny_families.idefics3 import build_idefics3
from labeling.tiny_families.llava_next import build_llava_next
from labeling.tiny_families.onevision import build_llava_onevision
from labeling.tiny_families.qwen_vl import build_qwen2_5_vl, build_qwen2_vl
from labeling.tiny_parts import INIT_STD, make_tokenizer, seeded, set_generation_ids, text_sizes

# `USER: <image> question\nASSISTANT:`; assistant turns end with eos. Newlines are written as {{ '\n' }}
# because trim_blocks would drop literal ones. Content may be a string or a list of typed parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% set parts = [{'type': 'text', 'text': message['content']}] if message['content'] is string "
    "else message['content'] %}"
    "{% if message['role'] == 'assistant' %}ASSISTANT: "
    "{% for part in parts %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{{ eos_token }}{{ '\n' }}"
    "{% else %}{{ message['role'] | upper }}: "
    "{% for part in parts %}{% if part['type'] == 'image' %}<image> {% endif %}{% endfor %}"
    "{% for part in parts %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{{ '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

# name -> (image px, patch px, vision width, text width, layers); the sizes ENVIRONMENT.md measured.
LLAVA_SIZES = {
    "tiny-llava": (32, 8, 32, 64, 2),
    "small-llava": (224, 14, 128, 256, 4),
}


def build_tokenizer(words: Sequence[str] | None = None) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer: every word of our prompts is one token, so Yes / No are single tokens.

    `words` replaces the default vocabulary (`tiny_vocabulary()`); the special tokens always come first.
    """
    return make_tokenizer(CHAT_TEMPLATE, words, named_tokens={"image_token": "<image>"})


def _text_config(tokenizer, width: int, layers: int) -> LlamaConfig:
    return LlamaConfig(**text_sizes(tokenizer, width, layers))


def build_llava(path: Path, image_px: int, patch_px: int, vision_width: int, text_width: int, layers: int):
    """Save a LlavaForConditionalGeneration and its LlavaProcessor under `path`."""
    tokenizer = build_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=vision_width,
        intermediate_size=2 * vision_width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        image_size=image_px,
        patch_size=patch_px,
        initializer_range=INIT_STD,
    )
    config = llava_config(vision, _text_config(tokenizer, text_width, layers), tokenizer)
    model = seeded(LlavaForConditionalGeneration, config)
    set_generation_ids(model, tokenizer)
    model.save_pretrained(path)
    build_processor(tokenizer, image_px, patch_px).save_pretrained(path)


def llava_config(vision, text, tokenizer, vision_feature_layer: int = -2) -> LlavaConfig:
    """LLaVA-1.5's layout around the given towers: an MLP projector (GELU) reading one layer's patch features,
    the CLS feature dropped ("default"), as the released checkpoints (layer -2) are."""
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=vision_feature_layer,
    )


def build_processor(tokenizer, image_px: int, patch_px: int) -> LlavaProcessor:
    """A LlavaProcessor with PIL image processing (no torchvision here) and our chat template."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_px}, crop_size={"height": image_px, "width": image_px}
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_px,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def build_text_lm(path: Path, width: int = 64, layers: int = 2):
    """Save a LlamaForCausalLM with the same tokenizer: the divide step's text LLM."""
    tokenizer = build_tokenizer()
    model = seeded(LlamaForCausalLM, _text_config(tokenizer, width, layers))
    set_generation_ids(model, tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def build_tiny_llava(path: Path):
    build_llava(path, *LLAVA_SIZES["tiny-llava"])


# The vision-language families the engines and DPO are proven on: folder name -> builder. The family
# tests (tests/test_families.py) and bench/gpu_check.py run over this registry.
FAMILIES = {
    "tiny-llava": build_tiny_llava,
    "tiny-qwen2-vl": build_qwen2_vl,
    "tiny-qwen2.5-vl": build_qwen2_5_vl,
    "tiny-gemma3": build_gemma3,
    "tiny-llava-next": build_llava_next,
    "tiny-llava-onevision": build_llava_onevision,
    "tiny-idefics3": build_idefics3,
}


def build_tiny_models(models_dir) -> dict[str, Path]:
    """Write every family's tiny checkpoint, small-llava and tiny-lm under `models_dir`; returns name -> folder."""
    models_dir = Path(models_dir)
    paths = {name: models_dir / name for name in [*FAMILIES, "small-llava", "tiny-lm"]}
    for name, build in FAMILIES.items():
        build(paths[name])
    build_llava(paths["small-llava"], *LLAVA_SIZES["small-llava"])
    build_text_lm(paths["tiny-lm"])
    return paths
