"""A tiny Gemma 3 checkpoint: a begin-of-image marker the processor expands, bidirectional attention over
the image's tokens, and sliding-window attention layers, as in the real one.

The chat prompt holds `<start_of_image>`; the processor turns it into `\\n\\n<start_of_image>`, the image's
soft tokens and `<end_of_image>\\n\\n`, and marks the soft tokens (`token_type_ids`) so that they attend to
each other both ways. The sliding window is far shorter than a prompt (real Gemma 3 uses 512 to 1024), so
tests exercise a cache that keeps only the window's last tokens.
"""

from pathlib import Path

from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    Gemma3TextConfig,
    SiglipVisionConfig,
)

from labeling.processors import make_processor
from labeling.tiny_parts import INIT_STD, make_tokenizer, seeded, set_generation_ids, text_sizes, vision_sizes
from labeling.tiny_vocab import tiny_vocabulary

# Gemma's turn markup; the assistant is "model", text is trimmed, the image is its begin marker.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set parts = [{'type': 'text', 'text': message['content']}] if message['content'] is string "
    "else message['content'] %}"
    "<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}{{ '\n' }}"
    "{% for part in parts %}{% if part['type'] == 'image' %}<start_of_image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] | trim }}{% endif %}{% endfor %}"
    "<end_of_turn>{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model{{ '\n' }}{% endif %}"
)
IMAGE_PX, PATCH_PX, IMAGE_TOKENS = 32, 8, 4  # 4x4 patches pooled to 2x2 soft tokens
SLIDING_WINDOW = 16


def build_gemma3(path: Path, width: int = 64, layers: int = 2):
    """Save a tiny Gemma3ForConditionalGeneration and its Gemma3Processor under `path`."""
    tokenizer = make_tokenizer(
        CHAT_TEMPLATE,
        words=tiny_vocabulary() + ["user", "model"],
        named_tokens={
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
            "image_token": "<image_soft_token>",
        },
        control_tokens=["<start_of_turn>"],
        eos_token="<end_of_turn>",
    )
    text = Gemma3TextConfig(
        **text_sizes(tokenizer, width, layers),
        head_dim=width // 4,
        query_pre_attn_scalar=width // 4,
        sliding_window=SLIDING_WINDOW,
        layer_types=["sliding_attention"] * (layers - 1) + ["full_attention"],
    )
    vision = SiglipVisionConfig(**vision_sizes(layers, IMAGE_PX, PATCH_PX))
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=IMAGE_TOKENS,
        boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"),
        initializer_range=INIT_STD,
    )
    model = seeded(Gemma3ForConditionalGeneration, config)
    set_generation_ids(model, tokenizer)
    model.save_pretrained(path)
    image_processor = Gemma3ImageProcessorPil(
        size={"height": IMAGE_PX, "width": IMAGE_PX}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor = make_processor(
        Gemma3Processor,
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        image_seq_length=IMAGE_TOKENS,
    )
    processor.save_pretrained(path)
