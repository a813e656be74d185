"""Batching: the one way the project cuts a list into consecutive slices (chunks of jobs, model batches)."""

from collections.abc import Iterator, Sequence


def batched(items: Sequence, size: int) -> Iterator[Sequence]:
    """Consecutive slices of at most `size` items, as itertools.batched (Python 3.12) but slices, not tuples."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, not {size}")
    return (items[i : i + size] for i in range(0, len(items), size))
