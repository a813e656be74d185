"""Step 1: every candidate carries the seed that reproduces it."""

import pytest

from labeling.backends.base import Sampling
from labeling.backends.transformers_backend import TransformersBackend
from labeling.generate import Candidate, Instruction, candidate_seeds, generate_candidates
from labeling.sample_images import save_sample_images


def test_it_derives_the_same_seeds_from_the_same_base_seed():
    assert candidate_seeds(3, base_seed=100) == (100, 101, 102)
    assert candidate_seeds(10) == candidate_seeds(10)


@pytest.mark.slow
def test_it_generates_n_reproducible_candidates_per_instruction(tiny_models_dir, tmp_path):
    coffee, chelsea = save_sample_images(tmp_path, ["coffee", "chelsea"])
    instructions = [Instruction(1, coffee, "Describe the image."), Instruction(2, chelsea, "What animal is this?")]
    backend = TransformersBackend(tiny_models_dir / "tiny-llava", batch_size=8)
    sampling = Sampling(max_new_tokens=12)

    candidates = generate_candidates(backend, instructions, n=4, sampling=sampling, base_seed=10)
    again = generate_candidates(backend, instructions[1:], n=4, sampling=sampling, base_seed=10)

    assert [(c.instruction_id, c.seed) for c in candidates] == [(i, s) for i in (1, 2) for s in range(10, 14)]
    assert all(isinstance(c, Candidate) and c.text for c in candidates)
    assert again == candidates[4:]
