"""Real-size vision-language architectures with random weights, written from their configs (no download).

The GPU machine reaches no model hub, yet throughput and memory depend only on the architecture: shapes,
layer counts, vocabulary. So the configs of LLaVA-1.5-7B and Qwen2-VL-7B(-Instruct) are written out here
(from their config.json) and the weights drawn at random, in bf16, directly on the device. Each comes with
a tiny stand-in of the same classes, so `bench/gpu_check.py --device cpu --tiny` runs the same code.

The tokenizer and processor are the tiny families' (a WordLevel vocabulary, each word one token), with the
real image sizes; the model's embedding keeps the real vocabulary size, so it costs what the real one does.
Sampled ids beyond the tokenizer's words decode to nothing, which changes no timing.
"""

import gc
from pathlib import Path

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
)

from labeling.processors import make_processor
from labeling.tiny_families import qwen_vl
from labeling.tiny_models import build_processor, build_tokenizer, llava_config
from labeling.tiny_parts import set_generation_ids, text_sizes
from training.vlm_parts import vlm_parts

REAL_INIT = 0.02  # the released configs' initializer_range; the tiny models' wider 0.1 would not suit 32 layers

# Values of llava-hf/llava-1.5-7b-hf's config.json (CLIP ViT-L/14 at 336 px, Vicuna-7B).
LLAVA_1_5_7B = {
    "vision": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
               "image_size": 336, "patch_size": 14, "projection_dim": 768, "hidden_act": "quick_gelu"},
    "text": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 32, "vocab_size": 32064, "rms_norm_eps": 1e-5, "initializer_range": REAL_INIT},
}  # fmt: skip
LLAVA_STANDIN = {
    "vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
               "image_size": 32, "patch_size": 8},
    "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2},
}  # fmt: skip

# Values of Qwen/Qwen2-VL-7B-Instruct's config.json and preprocessor_config.json (min/max pixels).
QWEN2_VL_7B = {
    "vision": {"depth": 32, "embed_dim": 1280, "hidden_size": 3584, "mlp_ratio": 4, "num_heads": 16,
               "initializer_range": REAL_INIT},
    "text": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
             "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
             "initializer_range": REAL_INIT,
             "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}},
    "pixels": (56 * 56, 28 * 28 * 16384),
}  # fmt: skip
QWEN_STANDIN = {
    "vision": {"depth": 2, "embed_dim": 32, "hidden_size": 64, "mlp_ratio": 2},
    "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2},
    "pixels": (qwen_vl.MIN_PIXELS, qwen_vl.MAX_PIXELS),
}


def random_model(model_class, config, device: str, dtype):
    """`model_class` with seeded random weights, created on `device` in `dtype` (no float32 copy on the CPU)."""
    torch.manual_seed(0)
    with torch.device(device):
        return model_class._from_config(config, dtype=dtype).eval()


def llava(sizes: dict, device: str, dtype):
    """A LLaVA-1.5 model (CLIP tower, MLP projector, Llama) of `sizes`, and its processor."""
    tokenizer = build_tokenizer()
    vision = CLIPVisionConfig(**sizes["vision"])
    text = LlamaConfig(**text_sizes(tokenizer, 64, 2) | sizes["text"])
    config = llava_config(vision, text, tokenizer)
    model = random_model(LlavaForConditionalGeneration, config, device, dtype)
    set_generation_ids(model, tokenizer)
    return model, build_processor(tokenizer, vision.image_size, vision.patch_size)


def qwen2_vl(sizes: dict, device: str, dtype):
    """A Qwen2-VL model (dynamic resolution, M-RoPE) of `sizes`, and its processor."""
    tokenizer = qwen_vl.build_tokenizer()
    text, vision, ids = qwen_vl.configs(tokenizer)
    config = Qwen2VLConfig(
        text_config=text | sizes["text"], vision_config=vision | sizes["vision"], tie_word_embeddings=False, **ids
    )
    model = random_model(Qwen2VLForConditionalGeneration, config, device, dtype)
    set_generation_ids(model, tokenizer)
    min_pixels, max_pixels = sizes["pixels"]
    processor = make_processor(
        Qwen2VLProcessor,
        image_processor=Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels),
        tokenizer=tokenizer,
        chat_template=qwen_vl.CHAT_TEMPLATE,
    )
    return model, processor


# name -> (builder, real sizes, tiny stand-in sizes)
ARCHITECTURES = {
    "llava-1.5-7b": (llava, LLAVA_1_5_7B, LLAVA_STANDIN),
    "qwen2-vl-7b": (qwen2_vl, QWEN2_VL_7B, QWEN_STANDIN),
}


def build_random_checkpoint(name: str, path: Path, device: str, tiny: bool = False) -> dict:
    """Save architecture `name` (its tiny stand-in with `tiny`) with random bf16 weights as a checkpoint folder.

    Returns its parameter counts: all, and those of the vision tower, which DPO keeps frozen.
    """
    build, real, standin = ARCHITECTURES[name]
    model, processor = build(standin if tiny else real, device, torch.bfloat16)
    parts = vlm_parts(model)
    counts = {
        "params": sum(p.numel() for p in model.parameters()),
        "frozen_params": sum(p.numel() for name, p in model.named_parameters() if parts.in_vision_tower(name)),
    }
    model.save_pretrained(path)
    processor.save_pretrained(path)
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return counts
