"""The loaded engines of one GPU worker, held within a memory budget, one stage's models at a time.

A worker serves many chunks of a stage, so an engine stays loaded between them. A model of another stage
replaces what the previous stage loaded: those engines are shut down (their GPU memory freed) before the new
one loads, unless the worker's budget says they all fit. The models one stage uses together (evaluation: the
new policy and the labeler) are held together; when even they exceed the budget the load is refused.
"""

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass

log = logging.getLogger(__name__)
GIB = 1024**3


class MemoryBudgetError(RuntimeError):
    """The models one stage needs together do not fit in the worker's memory budget."""


@dataclass
class Loaded:
    backend: object
    stage: str
    size: int  # bytes on the GPUs


def held_bytes(backend, estimate: int) -> int:
    """What a loaded engine holds: its own report (`memory_bytes()`) where it has one, else the estimate."""
    report = getattr(backend, "memory_bytes", None)
    return report() if callable(report) else estimate


def shut_down(backend) -> None:
    """Release what a backend holds: its own `shutdown` (vLLM's engines), else nothing but its references."""
    shutdown = getattr(backend, "shutdown", None)
    if shutdown is not None:
        shutdown()


class EnginePool:
    """Engines by key (engine, model, options, ...), loaded on demand within `budget` bytes (None: one stage).

    `free` runs after engines are shut down, before anything else loads (gc, the CUDA cache).
    """

    def __init__(self, budget: int | None = None, free: Callable[[], None] = lambda: None):
        self.budget = budget
        self.free = free
        self.loaded: dict[Hashable, Loaded] = {}

    @property
    def used(self) -> int:
        return sum(entry.size for entry in self.loaded.values())

    def get(self, key: Hashable, stage: str, size: int, load: Callable[[], object]):
        """The engine for `key`, loading it with `load()` for `stage`; `size` is what it will hold (bytes)."""
        entry = self.loaded.get(key)
        if entry is not None:
            entry.stage = stage
            return entry.backend
        self._make_room(stage, size, key)
        backend = load()
        self.loaded[key] = Loaded(backend, stage, held_bytes(backend, size))
        if self.budget is not None and self.used > self.budget:
            log.warning("%s holds more than estimated: the worker is at %.1f GiB", key, self.used / GIB)
        return backend

    def _make_room(self, stage: str, size: int, key) -> None:
        others = [k for k, entry in self.loaded.items() if entry.stage != stage]  # oldest first
        if self.budget is None:
            self.release(others)
            return
        while others and self.used + size > self.budget:
            self.release([others.pop(0)])
        if self.used + size > self.budget:
            held = ", ".join(str(k) for k in self.loaded) or "nothing"
            raise MemoryBudgetError(
                f"loading {key} ({size / GIB:.1f} GiB) for {stage} would take the worker to "
                f"{(self.used + size) / GIB:.1f} GiB, over its budget of {self.budget / GIB:.1f} GiB "
                f"(GPU_MEMORY_BUDGET_GB); held for this stage: {held}. Lower the models' memory options or give "
                "the worker more GPUs."
            )

    def release(self, keys=None) -> None:
        """Shut down the engines of `keys` (all by default) and free their memory."""
        keys = list(self.loaded) if keys is None else list(keys)
        if not keys:
            return
        for key in keys:
            entry = self.loaded.pop(key)
            log.info("shutting down %s (%s, %.1f GiB)", key, entry.stage, entry.size / GIB)
            shut_down(entry.backend)
        self.free()
