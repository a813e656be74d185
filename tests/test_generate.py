"""Step 1: every candidate carries the seed that reproduces it."""

import pytest

from labeling.backends.base import Sampling
from labeling.backends.transformers_backend import TransformersBackend
from labeling.generate import (
    SHARED,
    Candidate,
    Instruction,
    candidate_seeds,
    generate_candidates,
    instruction_key,
)
from labeling.sample_images import save_sample_images


def test_it_derives_the_same_seeds_from_the_same_arguments():
    key = instruction_key("ab" * 32, "Describe the image.")
    assert candidate_seeds(10, base_seed=3, key=key) == candidate_seeds(10, base_seed=3, key=key)
    assert len(set(candidate_seeds(10, key=key))) == 10
    assert all(0 <= seed < 2**31 for seed in candidate_seeds(10, key=key))
    assert candidate_seeds(3, base_seed=100, seeding=SHARED) == (100, 101, 102)


def test_no_two_instructions_share_a_candidates_random_stream():
    """Candidate k of each of 2,000 instructions (a picture each, or one picture asked two questions) has a seed
    of its own: sharing one would make all pictures one draw."""
    keys = [instruction_key(f"{i:064x}", "Describe the image.") for i in range(1000)]
    keys += [instruction_key(f"{i:064x}", "What is in the picture?") for i in range(1000)]
    for k in range(3):
        assert len({candidate_seeds(3, base_seed=0, key=key)[k] for key in keys}) == len(keys)
    assert candidate_seeds(3, base_seed=0, key=keys[0]) != candidate_seeds(3, base_seed=1, key=keys[0])


def test_an_instructions_identity_is_its_content(tmp_path):
    """The same image file under another id, or a copy under another name, draws the same seeds."""
    (a,) = save_sample_images(tmp_path / "a", ["coffee"])
    (b,) = save_sample_images(tmp_path / "b", ["coffee"])
    assert Instruction(1, a, "Describe the image.").identity() == Instruction(7, b, "Describe the image.").identity()
    assert Instruction(1, a, "Describe the image.").identity() != Instruction(1, a, "What is this?").identity()


@pytest.mark.slow
def test_it_generates_n_reproducible_candidates_per_instruction(tiny_models_dir, tmp_path):
    coffee, chelsea = save_sample_images(tmp_path, ["coffee", "chelsea"])
    instructions = [Instruction(1, coffee, "Describe the image."), Instruction(2, chelsea, "What animal is this?")]
    backend = TransformersBackend(tiny_models_dir / "tiny-llava", batch_size=8)
    sampling = Sampling(max_new_tokens=12)

    candidates = generate_candidates(backend, instructions, n=4, sampling=sampling, base_seed=10)
    again = generate_candidates(backend, instructions[1:], n=4, sampling=sampling, base_seed=10)

    seeds = {i.id: candidate_seeds(4, 10, i.identity()) for i in instructions}
    assert [(c.instruction_id, c.seed) for c in candidates] == [(i, s) for i in (1, 2) for s in seeds[i]]
    assert all(isinstance(c, Candidate) and c.text for c in candidates)
    assert again == candidates[4:]
