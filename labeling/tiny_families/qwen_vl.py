"""Tiny Qwen2-VL and Qwen2.5-VL checkpoints: dynamic resolution and M-RoPE, as in the real ones.

Images keep their aspect ratio (resized to multiples of 28 px between MIN_PIXELS and MAX_PIXELS), so two
images of different shapes take different numbers of image tokens, and the text positions after an image
continue from its 3-D (time, height, width) positions, not from its token count.
"""

from pathlib import Path

from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
)

from labeling.processors import make_processor
from labeling.tiny_parts import INIT_STD, make_tokenizer, seeded, set_generation_ids, text_sizes
from labeling.tiny_vocab import tiny_vocabulary

# Qwen's chat markup (without its default system turn); content is a string or a list of typed parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% set parts = [{'type': 'text', 'text': message['content']}] if message['content'] is string "
    "else message['content'] %}"
    "<|im_start|>{{ message['role'] }}{{ '\n' }}"
    "{% for part in parts %}{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{{ '\n' }}{% endif %}"
)
ROLE_WORDS = ["user", "assistant", "system"]
PATCH_PX, MERGE = 14, 2
MIN_PIXELS, MAX_PIXELS = (PATCH_PX * MERGE) ** 2 * 4, (PATCH_PX * MERGE) ** 2 * 16  # 4 to 16 image tokens


def build_tokenizer():
    return make_tokenizer(
        CHAT_TEMPLATE,
        words=tiny_vocabulary() + ROLE_WORDS,
        named_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        control_tokens=["<|im_start|>", "<|vision_start|>", "<|vision_end|>"],
        eos_token="<|im_end|>",
    )


def configs(tokenizer, width: int = 64, layers: int = 2) -> tuple[dict, dict, dict]:
    """Text, vision and top-level config values shared by both Qwen generations."""
    text = text_sizes(tokenizer, width, layers) | {
        # head_dim 16: 8 rotary frequencies split over time, height and width
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
    }
    vision = {
        "depth": layers,
        "num_heads": 4,
        "patch_size": PATCH_PX,
        "spatial_merge_size": MERGE,
        "temporal_patch_size": 2,
        "initializer_range": INIT_STD,
    }
    ids = {
        name: tokenizer.convert_tokens_to_ids(token)
        for name, token in {
            "image_token_id": "<|image_pad|>",
            "video_token_id": "<|video_pad|>",
            "vision_start_token_id": "<|vision_start|>",
            "vision_end_token_id": "<|vision_end|>",
        }.items()
    }
    return text, vision, ids


def save(path: Path, model, tokenizer, processor_class):
    set_generation_ids(model, tokenizer)
    model.save_pretrained(path)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    processor = make_processor(
        processor_class, image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
    processor.save_pretrained(path)


def build_qwen2_vl(path: Path, width: int = 64, layers: int = 2):
    """Save a tiny Qwen2VLForConditionalGeneration and its Qwen2VLProcessor under `path`."""
    tokenizer = build_tokenizer()
    text, vision, ids = configs(tokenizer, width, layers)
    vision |= {"embed_dim": 32, "hidden_size": width, "mlp_ratio": 2}
    config = Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)
    save(path, seeded(Qwen2VLForConditionalGeneration, config), tokenizer, Qwen2VLProcessor)


def build_qwen2_5_vl(path: Path, width: int = 64, layers: int = 2):
    """Save a tiny Qwen2_5_VLForConditionalGeneration (windowed vision attention) and its processor."""
    tokenizer = build_tokenizer()
    text, vision, ids = configs(tokenizer, width, layers)
    # One window of 2x2 merged patches, the last block full attention, as in the real models' pattern.
    vision |= {
        "hidden_size": 32,
        "intermediate_size": 64,
        "out_hidden_size": width,
        "window_size": PATCH_PX * MERGE * 2,
        "fullatt_block_indexes": [layers - 1],
    }
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **ids)
    save(path, seeded(Qwen2_5_VLForConditionalGeneration, config), tokenizer, Qwen2_5_VLProcessor)
