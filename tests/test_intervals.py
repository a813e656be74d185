"""The benches' intervals (bench/intervals.py) on data whose answer is known."""

import numpy as np
import pytest

from bench.intervals import bootstrap, delta, reduction


def test_a_reduction_and_its_interval_cover_the_truth_most_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(40):
        base = rng.random((3, 400)) < 0.4  # the base policy hallucinates on 40 % of pictures
        after = rng.random((3, 400)) < 0.2  # the trained one on 20 %: the true reduction is 0.5
        estimate = bootstrap({"base": base, "after": after}, {"r": reduction("base", "after")}, seed=trial)["r"]
        covered += estimate.low <= 0.5 <= estimate.high
        assert estimate.low < estimate.mean < estimate.high
    assert covered >= 34  # about 95 % of 40


def test_paired_differences_are_tighter_than_the_arms_alone():
    rng = np.random.default_rng(2)
    shared = rng.random((4, 300))
    arrays = {"a": (shared < 0.3).astype(float), "b": (shared < 0.32).astype(float)}  # b = a on most pictures
    estimates = bootstrap(arrays, {"a": lambda x: x["a"].mean(), "diff": delta("a", "b")})
    assert estimates["diff"].se < estimates["a"].se / 3
    assert estimates["diff"].detectable == pytest.approx(2.8 * estimates["diff"].se)


def test_arrays_must_cover_the_same_replicates_and_pictures():
    with pytest.raises(ValueError, match="same replicates and pictures"):
        bootstrap({"a": np.zeros((2, 5)), "b": np.zeros((3, 5))}, {})
