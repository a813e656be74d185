"""A tiny LLaVA-NeXT (LLaVA-1.6) checkpoint, laid out as llava-hf/llava-v1.6-* are: the paper's labeler family.

A CLIP tower and a Llama language model as in LLaVA-1.5, plus any-resolution tiling: an image is resized
into its best-fitting grid of `GRID_PINPOINTS` (multiples of the tile, as 336 is for the real ones), cut
into tiles, and a downscaled whole view goes first; the tiles' features are un-padded to the image's aspect
ratio and the learnt `image_newline` feature ends each row, so images of different shapes take different
numbers of image tokens. The chat markup is llava-v1.6-34b's ChatML (the labeler RLAIF-V used), without
its system turn.
"""

from pathlib import Path

from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
)

from labeling.tiny_parts import INIT_STD, make_tokenizer, seeded, set_generation_ids, text_sizes, vision_sizes
from labeling.tiny_vocab import tiny_vocabulary

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% set parts = [{'type': 'text', 'text': message['content']}] if message['content'] is string "
    "else message['content'] %}"
    "<|im_start|>{{ message['role'] }}{{ '\n' }}"
    "{% for part in parts %}{% if part['type'] == 'image' %}<image>{{ '\n' }}{% endif %}{% endfor %}"
    "{% for part in parts %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\n' }}{% endif %}"
)
TILE_PX, PATCH_PX = 32, 8  # 16 patch tokens a tile; CLIP's class token is dropped ("default" strategy)
# llava-v1.6's grids: 1x2, 2x1, 2x2, 3x1 and 1x3 tiles.
GRID_PINPOINTS = [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]]


def build_llava_next(path: Path, width: int = 64, layers: int = 2):
    """Save a tiny LlavaNextForConditionalGeneration and its LlavaNextProcessor under `path`."""
    tokenizer = make_tokenizer(
        CHAT_TEMPLATE,
        words=tiny_vocabulary() + ["user", "assistant", "system"],
        named_tokens={"image_token": "<image>"},
        control_tokens=["<|im_start|>"],
        eos_token="<|im_end|>",
    )
    vision = CLIPVisionConfig(**vision_sizes(layers, TILE_PX, PATCH_PX), initializer_range=INIT_STD)
    config = LlavaNextConfig(
        vision_config=vision,
        text_config=LlamaConfig(**text_sizes(tokenizer, width, layers)),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=GRID_PINPOINTS,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=(TILE_PX // PATCH_PX) ** 2,
    )
    model = seeded(LlavaNextForConditionalGeneration, config)
    set_generation_ids(model, tokenizer)
    model.save_pretrained(path)
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": TILE_PX},
        crop_size={"height": TILE_PX, "width": TILE_PX},
        image_grid_pinpoints=GRID_PINPOINTS,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_PX,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(path)
