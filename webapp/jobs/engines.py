"""Model engines for the workers: resolve model names and keep loaded backends within the worker's GPU memory.

A GPU worker runs one task at a time and serves many chunks of the same iteration, so a loaded model is kept
instead of being reloaded per chunk. It holds one stage's models at a time (labeling.engine_pool): the
labeler's engine loads only after the policy's was shut down and its memory freed, unless
GPU_MEMORY_BUDGET_GB says both fit. `release_models` empties it before DPO trains in a child process.
"""

import gc
import sys

from django.conf import settings

from labeling.backends import load_backend
from labeling.engine_options import GIB, TRANSFORMERS_OVERHEAD, backend_options, memory_estimate, weights_bytes
from labeling.engine_pool import EnginePool
from webapp.places import SERVED, PlaceError, model_folder


def free_gpu_memory() -> None:
    """Collect what the released engines left and hand the CUDA cache back to the driver."""
    gc.collect()
    torch = sys.modules.get("torch")  # never import torch just to free memory it never held
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def gpu_bytes() -> int:
    """One GPU's memory (what vLLM's `gpu_memory_utilization` is a share of); 0 without CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return 0
    return torch.cuda.get_device_properties(0).total_memory


POOL = EnginePool(free=free_gpu_memory)


def budget_bytes() -> int | None:
    budget = settings.GPU_MEMORY_BUDGET_GB
    return None if budget is None else int(budget * GIB)


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names it and the engine."""


def backend_for(
    engine: str, model: str, text_model: str | None = None, *, options: dict | None = None, stage: str = "any"
):
    """The backend for a model with its checked engine options (webapp.iterations.config.engine_options), loaded
    once per worker process for `stage` (a job kind); another stage's engines are shut down first (see the module)."""
    options = options or {}
    if engine != SERVED:  # the server's names are not files (webapp/places.py)
        try:
            model, text_model = model_folder(model), model_folder(text_model) if text_model else None
        except PlaceError as exc:
            names = f"{model!r}" + (f" (text model {text_model!r})" if text_model else "")
            raise ModelLoadError(f"cannot load model {names} with engine {engine}: {exc}") from exc
    kwargs = backend_options(engine, options)
    if engine == "transformers":
        kwargs.setdefault("device", settings.TORCH_DEVICE)
    if engine == "openai":
        kwargs |= {"base_url": settings.OPENAI_BASE_URL, "api_key": settings.OPENAI_API_KEY}
    size = memory_estimate(engine, options, text_model if engine == "vllm" and text_model else model, gpu_bytes())
    if engine == "transformers" and text_model:
        size += int(weights_bytes(text_model) * TRANSFORMERS_OVERHEAD)  # the divide LLM loads beside the VLM

    def load():
        try:
            return load_backend(engine, model, text_model=text_model, **kwargs)
        except (OSError, ValueError, ImportError) as exc:
            names = f"{model!r}" + (f" (text model {text_model!r})" if text_model else "")
            raise ModelLoadError(f"cannot load model {names} with engine {engine}: {exc}") from exc

    POOL.budget = budget_bytes()
    key = (engine, model, text_model, tuple(sorted(kwargs.items())))
    return POOL.get(key, stage, size, load)


class OnFirstUse:
    """A backend loaded when a method is first called, so a stage that uses its models one after another (evaluate:
    answer, divide, judge) holds each alone: every phase is a stage of its own to the pool."""

    def __init__(self, load):
        self._load = load

    def __getattr__(self, name):
        return getattr(self._load(), name)


def reward_models(policy: str, reference: str, stage: str = "label"):
    """A DPO-aligned policy and its reference, for self-reward scoring; loaded once per worker process."""
    from training.self_reward import load_models

    try:
        policy, reference = model_folder(policy), model_folder(reference)
    except PlaceError as exc:
        raise ModelLoadError(f"cannot load the self-reward models {policy!r} and {reference!r}: {exc}") from exc
    size = int((weights_bytes(policy) + weights_bytes(reference)) * TRANSFORMERS_OVERHEAD)
    POOL.budget = budget_bytes()
    load = lambda: load_models(policy, reference, device=settings.TORCH_DEVICE)  # noqa: E731
    return POOL.get(("self_reward", policy, reference), stage, size, load)


def release_models() -> None:
    """Shut every loaded engine down and free its GPU memory, e.g. before a child process trains on that GPU."""
    POOL.release()
    free_gpu_memory()
