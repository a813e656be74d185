"""Tiny, real checkpoints built offline, for tests and the demo (no model hub here).

They are randomly initialised, so they answer with random vocabulary words, but they are genuine
LLaVA / Llama checkpoints: every code path (processor, KV cache, sampling, DPO) runs as on a real model.
Initialisation is seeded, so building twice gives identical weights and tests can compare numbers.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
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

from labeling.tiny_vocab import SPECIAL_TOKENS, tiny_vocabulary

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

SEED = 0
# Wider than the usual 0.02: at 0.02 every output is close to uniform, so a test could not tell a right
# KV cache from a wrong one; at 0.1 the yes/no mass moves visibly with the image and the question.
INIT_STD = 0.1

# name -> (image px, patch px, vision width, text width, layers); the sizes ENVIRONMENT.md measured.
LLAVA_SIZES = {
    "tiny-llava": (32, 8, 32, 64, 2),
    "small-llava": (224, 14, 128, 256, 4),
}


def build_tokenizer(words: Sequence[str] | None = None) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer: every word of our prompts is one token, so Yes / No are single tokens.

    `words` replaces the default vocabulary (`tiny_vocabulary()`); the special tokens always come first.
    """
    words = tiny_vocabulary() if words is None else list(dict.fromkeys([*SPECIAL_TOKENS, *words]))
    vocab = {word: index for index, word in enumerate(words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
        padding_side="left",
        clean_up_tokenization_spaces=True,
        chat_template=CHAT_TEMPLATE,
    )


def _text_config(tokenizer, width: int, layers: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=INIT_STD,
    )


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
    config = LlavaConfig(
        vision_config=vision,
        text_config=_text_config(tokenizer, text_width, layers),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlavaForConditionalGeneration(config)
    set_generation_ids(model, tokenizer)
    model.save_pretrained(path)
    build_processor(tokenizer, image_px, patch_px).save_pretrained(path)


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
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(_text_config(tokenizer, width, layers))
    set_generation_ids(model, tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def set_generation_ids(model, tokenizer):
    """Generation stops at our eos and pads with our pad, whatever the config's defaults are."""
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id


def build_tiny_models(models_dir) -> dict[str, Path]:
    """Write tiny-llava, small-llava and tiny-lm under `models_dir`; returns name -> folder."""
    models_dir = Path(models_dir)
    paths = {name: models_dir / name for name in [*LLAVA_SIZES, "tiny-lm"]}
    for name, sizes in LLAVA_SIZES.items():
        build_llava(paths[name], *sizes)
    build_text_lm(paths["tiny-lm"])
    return paths
