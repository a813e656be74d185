"""A tiny LLaVA-OneVision checkpoint: any-resolution tiling, as in the real one.

An image is cut into the tiles of its best-fitting grid (`GRID_PINPOINTS`) plus a downscaled whole view;
the tiles' features are un-padded to the image's aspect ratio and a newline feature ends each row, so two
images of different shapes take different numbers of image tokens and different tensor shapes.
"""

from pathlib import Path

from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessorPil,
    LlavaOnevisionProcessor,
    Qwen2Config,
    SiglipVisionConfig,
)

from labeling.processors import make_processor
from labeling.tiny_parts import INIT_STD, make_tokenizer, seeded, set_generation_ids, text_sizes, vision_sizes
from labeling.tiny_vocab import tiny_vocabulary

# OneVision's Qwen2 chat markup (without its default system turn): `<image>` and a newline before the text.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% set parts = [{'type': 'text', 'text': message['content']}] if message['content'] is string "
    "else message['content'] %}"
    "<|im_start|>{{ message['role'] }}{{ ' ' if message['role'] == 'user' else '\n' }}"
    "{% for part in parts %}{% if part['type'] == 'image' %}<image>{{ '\n' }}{% endif %}{% endfor %}"
    "{% for part in parts %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\n' }}{% endif %}"
)
TILE_PX, PATCH_PX = 32, 8  # 16 tokens a tile
GRID_PINPOINTS = [[32, 32], [32, 64], [64, 32], [64, 64], [32, 96], [96, 32]]


def build_llava_onevision(path: Path, width: int = 64, layers: int = 2):
    """Save a tiny LlavaOnevisionForConditionalGeneration and its LlavaOnevisionProcessor under `path`."""
    tokenizer = make_tokenizer(
        CHAT_TEMPLATE,
        words=tiny_vocabulary() + ["user", "assistant", "system"],
        named_tokens={"image_token": "<image>", "video_token": "<video>"},
        control_tokens=["<|im_start|>"],
        eos_token="<|im_end|>",
    )
    text = Qwen2Config(**text_sizes(tokenizer, width, layers))
    vision = SiglipVisionConfig(**vision_sizes(layers, TILE_PX, PATCH_PX))
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=GRID_PINPOINTS,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        initializer_range=INIT_STD,
    )
    model = seeded(LlavaOnevisionForConditionalGeneration, config)
    set_generation_ids(model, tokenizer)
    model.save_pretrained(path)
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": TILE_PX, "width": TILE_PX}, image_grid_pinpoints=GRID_PINPOINTS
    )
    processor = make_processor(
        LlavaOnevisionProcessor,
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        num_image_tokens=(TILE_PX // PATCH_PX) ** 2,
        vision_feature_select_strategy="full",
    )
    processor.save_pretrained(path)
