"""Batched sampling where each row draws from its own seeded RNG.

`model.generate(do_sample=True)` draws every row from one global RNG, so a candidate's text depends on
which other rows share its batch, and `num_return_sequences` ties seeds to positions. Here every row owns a
`torch.Generator` seeded with the candidate's seed and is sampled from that generator alone: the draws a
row sees depend only on its seed and its own logits. Batching stays intact (one forward per step for all
rows, one shared KV cache). What is left is floating-point rounding of batched kernels (~1e-7 in a logit),
which can change a token only when a uniform draw lands that close to a boundary of the cumulative
distribution, a chance far below one in a million per token.
"""

from collections.abc import Sequence

import torch

from labeling.backends.base import Sampling
from labeling.backends.positions import next_positions, prompt_positions


def sample_next(logits: torch.Tensor, generators: Sequence[torch.Generator], sampling: Sampling) -> torch.Tensor:
    """One token id per row; temperature 0 means greedy. Top-p keeps the smallest nucleus reaching top_p."""
    if sampling.temperature <= 0:
        return logits.argmax(-1)
    probs = (logits.float() / sampling.temperature).softmax(-1)
    order = None
    if sampling.top_p < 1.0:
        probs, order = probs.sort(dim=-1, descending=True, stable=True)
        mass_before = probs.cumsum(-1) - probs
        probs = probs.masked_fill(mass_before >= sampling.top_p, 0.0)
    picks = torch.stack(
        [torch.multinomial(row, 1, generator=gen)[0] for row, gen in zip(probs, generators, strict=True)]
    )
    return picks if order is None else order.gather(-1, picks[:, None])[:, 0]


@torch.inference_mode()
def sample_rows(
    model,
    inputs: dict,
    rows: Sequence[int],
    seeds: Sequence[int],
    sampling: Sampling,
    eos_ids: set[int],
) -> list[list[int]]:
    """Sample one continuation per row; row i continues prompt `rows[i]` of `inputs` with seed `seeds[i]`.

    Each prompt is run once (left-padded, explicit position ids: see `positions`) and its KV cache is
    copied to its rows, so ten candidates of one question cost one prefill. Finished rows leave the batch
    (and the cache).
    """
    mask = inputs["attention_mask"]
    positions = prompt_positions(model, inputs)
    out = model(**inputs, position_ids=positions, use_cache=True, logits_to_keep=1)
    index = torch.tensor(rows, device=mask.device)
    cache = out.cache
    cache.batch_select_indices(index)
    mask, logits = mask[index], out.logits[index, -1]
    next_position = next_positions(positions)[index]
    generators = [torch.Generator(device=logits.device).manual_seed(seed) for seed in seeds]
    tokens: list[list[int]] = [[] for _ in rows]
    alive = list(range(len(rows)))
    for step in range(sampling.max_new_tokens):
        picked = sample_next(logits, [generators[i] for i in alive], sampling)
        keep = []
        for slot, (row, token) in enumerate(zip(alive, picked.tolist(), strict=True)):
            if token in eos_ids:
                continue
            tokens[row].append(token)
            keep.append(slot)
        if not keep or step == sampling.max_new_tokens - 1:
            break
        if len(keep) < len(alive):
            slots = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(slots)
            mask, picked, next_position = mask[slots], picked[slots], next_position[slots]
            alive = [alive[slot] for slot in keep]
        mask = torch.cat([mask, mask.new_ones(len(alive), 1)], dim=-1)
        out = model(
            input_ids=picked[:, None],
            attention_mask=mask,
            position_ids=next_position[:, None],
            cache=cache,
            use_cache=True,
        )
        logits = out.logits[:, -1]
        next_position = next_position + 1
    return tokens
