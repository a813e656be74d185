"""A tiny Idefics3 checkpoint: image splitting, as in the real one (and in SmolVLM, built on it).

A large image is resized and split into a grid of tiles plus a downscaled global view; each tile's tokens are
framed by `<fake_token_around_image>` and tagged `<row_i_col_j>`, so two images of different shapes take
different numbers of image tokens and different tensor shapes.
"""

from pathlib import Path

from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3ImageProcessorPil,
    Idefics3Processor,
    Idefics3VisionConfig,
    LlamaConfig,
)

from labeling.processors import make_processor
from labeling.tiny_parts import INIT_STD, make_tokenizer, seeded, set_generation_ids, text_sizes, vision_sizes
from labeling.tiny_vocab import tiny_vocabulary

# Idefics3's markup: `User:<image>question<end_of_utterance>\nAssistant:`.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set parts = [{'type': 'text', 'text': message['content']}] if message['content'] is string "
    "else message['content'] %}"
    "{{ message['role'] | capitalize }}{{ ':' if parts[0]['type'] == 'image' else ': ' }}"
    "{% for part in parts %}{% if part['type'] == 'image' %}<image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "<end_of_utterance>{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
TILE_PX, PATCH_PX, SCALE = 32, 8, 2  # 16 patches a tile, pixel-shuffled to 4 tokens
TILE_TAGS = [f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)]


def build_idefics3(path: Path, width: int = 64, layers: int = 2):
    """Save a tiny Idefics3ForConditionalGeneration and its Idefics3Processor under `path`."""
    tokenizer = make_tokenizer(
        CHAT_TEMPLATE,
        words=tiny_vocabulary() + ["User", "Assistant"],
        named_tokens={"image_token": "<image>"},
        control_tokens=["<fake_token_around_image>", "<global-img>", *TILE_TAGS],
        eos_token="<end_of_utterance>",
    )
    text = LlamaConfig(**text_sizes(tokenizer, width, layers))
    vision = Idefics3VisionConfig(
        **vision_sizes(layers, TILE_PX, PATCH_PX),
        initializer_range=INIT_STD,
    )
    config = Idefics3Config(
        vision_config=vision,
        text_config=text,
        scale_factor=SCALE,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    model = seeded(Idefics3ForConditionalGeneration, config)
    set_generation_ids(model, tokenizer)
    model.save_pretrained(path)
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 2 * TILE_PX}, max_image_size={"longest_edge": TILE_PX}, do_image_splitting=True
    )
    processor = make_processor(
        Idefics3Processor,
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        image_seq_len=(TILE_PX // PATCH_PX) ** 2 // SCALE**2,
    )
    processor.save_pretrained(path)
