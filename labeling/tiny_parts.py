"""What every tiny offline checkpoint shares: a WordLevel tokenizer, seeded initialisation, generation ids.

Each family's builder (`labeling/tiny_families/`) and the LLaVA one (`labeling/tiny_models.py`) make their
tokenizer and weights here, so all of them are built the same deterministic way.
"""

from collections.abc import Sequence

import torch
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from labeling.tiny_vocab import SPECIAL_TOKENS, tiny_vocabulary

SEED = 0
# Wider than the usual 0.02: at 0.02 every output is close to uniform, so a test could not tell a right
# KV cache from a wrong one; at 0.1 the yes/no mass moves visibly with the image and the question.
INIT_STD = 0.1


def make_tokenizer(
    chat_template: str,
    words: Sequence[str] | None = None,
    named_tokens: dict[str, str] | None = None,
    control_tokens: Sequence[str] = (),
    eos_token: str = "</s>",
) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer: every word of our prompts is one token, so Yes / No are single tokens.

    `words` replaces the default vocabulary (`tiny_vocabulary()`); the special tokens always come first and a
    family's own tokens (`named_tokens`, e.g. {"image_token": "<|image_pad|>"}, which become attributes of
    the tokenizer as in the real checkpoints, and unnamed `control_tokens`) last, so the words keep their ids.
    """
    words = tiny_vocabulary() if words is None else list(dict.fromkeys([*SPECIAL_TOKENS, *words]))
    named_tokens = named_tokens or {}
    family = [token for token in [*named_tokens.values(), *control_tokens, eos_token] if token not in words]
    vocab = {word: index for index, word in enumerate(dict.fromkeys([*words, *family]))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    # Control tokens are matched whole before pre-tokenising (they contain punctuation) and skipped on decode.
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in control_tokens])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token=eos_token,
        unk_token="<unk>",
        extra_special_tokens=named_tokens,
        padding_side="left",
        clean_up_tokenization_spaces=True,
        chat_template=chat_template,
    )


def text_sizes(tokenizer, width: int, layers: int) -> dict:
    """A tiny language model's sizes and special ids, the same in every family's text config."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": width,
        "intermediate_size": 2 * width,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "initializer_range": INIT_STD,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def vision_sizes(layers: int, image_px: int, patch_px: int) -> dict:
    """A tiny vision encoder's sizes, the same in every family that takes a ViT-like config."""
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "image_size": image_px,
        "patch_size": patch_px,
    }


def seeded(model_class, config):
    """`model_class(config)` with weights drawn from SEED, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return model_class(config)


def set_generation_ids(model, tokenizer):
    """Generation stops at our eos and pads with our pad, whatever the config's defaults are."""
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
