"""Position ids for prompts that run in pieces: a shared prefix then its tails, a prefill then decode steps.

Most models number a row's tokens 0, 1, 2, ... (left padding skipped). Qwen2-VL and Qwen2.5-VL use M-RoPE:
an image's tokens take 3-D (time, height, width) positions and the text after it continues from the largest
of them plus one, not from the token count. `prompt_positions` asks such a model for its 3-D positions
(its public `get_rope_index`); `next_positions` is where each row's following token goes. A text token's
position is the same on all three axes, so tokens after the prompt pass plain 2-D positions, which the
model repeats over the axes, exactly as its own `generate` does.
"""

import torch


def prompt_positions(model, inputs: dict) -> torch.Tensor:
    """Positions of a left-padded prompt batch: (batch, length), or (3, batch, length) under M-RoPE."""
    mask = inputs["attention_mask"]
    rope_index = getattr(getattr(model, "model", None), "get_rope_index", None)
    if rope_index is not None and "image_grid_thw" in inputs:
        positions, _ = rope_index(
            inputs["input_ids"],
            mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs["image_grid_thw"],
            attention_mask=mask,
        )
        return positions
    return (mask.cumsum(-1) - 1).clamp(min=0)


def next_positions(positions: torch.Tensor) -> torch.Tensor:
    """(batch,): the position of the token that follows each row of `positions`."""
    last = positions.amax(-1)
    return (last.amax(0) if last.ndim == 2 else last) + 1
