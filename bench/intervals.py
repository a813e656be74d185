"""Figures of replicated runs with 95 % intervals: a bootstrap over pictures and replicates, paired across arms.

Every arm of a bench is evaluated on the same pictures, and replicate r of every arm starts from the same base
draw, so each bootstrap draw resamples the replicates and the pictures once and computes every arm's figure
(and every difference between arms) on that one resample: differences keep their pairing. The interval is the
2.5th to 97.5th percentile of the draws; the smallest difference the design detects (80 % power, two-sided
α = 0.05) is 2.8 × the bootstrap standard error of that difference.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DRAWS = 2000


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float
    se: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"

    @property
    def detectable(self) -> float:
        """The smallest true difference found 80 % of the time at two-sided α = 0.05 (for a difference)."""
        return 2.8 * self.se


def bootstrap(
    arrays: dict[str, np.ndarray], figures: dict[str, Callable[[dict[str, np.ndarray]], float]], seed: int = 0
) -> dict[str, Estimate]:
    """`arrays`: name → (replicates × pictures) per-picture values, every one over the same replicates and pictures;
    `figures`: name → a function of those arrays (resampled alike). Returns each figure on the data, with its
    interval and standard error over DRAWS resamples."""
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1:
        raise ValueError(f"every array must cover the same replicates and pictures, not {sorted(shapes)}")
    ((replicates, pictures),) = shapes
    rng = np.random.default_rng(seed)
    draws = {name: np.empty(DRAWS) for name in figures}
    for d in range(DRAWS):
        rows, cols = rng.integers(replicates, size=replicates), rng.integers(pictures, size=pictures)
        sample = {name: a[rows][:, cols] for name, a in arrays.items()}
        for name, figure in figures.items():
            draws[name][d] = figure(sample)
    estimates = {}
    for name, figure in figures.items():
        low, high = np.nanpercentile(draws[name], [2.5, 97.5])
        estimates[name] = Estimate(float(figure(arrays)), float(low), float(high), float(np.nanstd(draws[name])))
    return estimates


def reduction(before: str, after: str) -> Callable[[dict[str, np.ndarray]], float]:
    """1 − (the rate after) / (the rate before), each pooled over replicates and pictures."""
    return lambda a: 1 - a[after].sum() / a[before].sum()


def ratio(before: str, after: str) -> Callable[[dict[str, np.ndarray]], float]:
    return lambda a: a[after].sum() / a[before].sum()


def delta(before: str, after: str) -> Callable[[dict[str, np.ndarray]], float]:
    """The mean after − the mean before."""
    return lambda a: a[after].mean() - a[before].mean()
