"""Model engines for the workers: resolve model names and keep loaded backends for the process's life.

A GPU worker runs one task at a time and serves many chunks of the same iteration, so a loaded model is
kept (two at most: the policy and the labeler) instead of being reloaded per chunk.
"""

import functools
import gc
import os
import sys
from pathlib import Path

from django.conf import settings

from labeling.backends import load_backend


def resolve_model(name: str) -> str:
    """A bare name found under MODELS_DIR (e.g. "tiny-llava") means that folder; anything else is used as is."""
    if name and not os.path.isabs(name) and (Path(settings.MODELS_DIR) / name).is_dir():
        return str(Path(settings.MODELS_DIR) / name)
    return name


@functools.lru_cache(maxsize=2)
def _backend(engine: str, model: str, text_model: str | None):
    options = {}
    if engine == "transformers":
        options = {"device": settings.TORCH_DEVICE}
    if engine == "openai":
        options = {"base_url": settings.OPENAI_BASE_URL, "api_key": settings.OPENAI_API_KEY}
    return load_backend(engine, model, text_model=text_model, **options)


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names it and the engine."""


def backend_for(engine: str, model: str, text_model: str | None = None):
    """The backend for a model, loaded once per worker process."""
    try:
        return _backend(engine, resolve_model(model), resolve_model(text_model) if text_model else None)
    except (OSError, ValueError, ImportError) as exc:
        names = f"{model!r}" + (f" (text model {text_model!r})" if text_model else "")
        raise ModelLoadError(f"cannot load model {names} with engine {engine}: {exc}") from exc


@functools.lru_cache(maxsize=1)
def reward_models(policy: str, reference: str):
    """A DPO-aligned policy and its reference, for self-reward scoring; loaded once per worker process."""
    from training.self_reward import load_models

    return load_models(resolve_model(policy), resolve_model(reference), device=settings.TORCH_DEVICE)


def release_models() -> None:
    """Drop the loaded models and free their GPU memory, e.g. before a child process trains on that GPU."""
    _backend.cache_clear()
    reward_models.cache_clear()
    gc.collect()
    torch = sys.modules.get("torch")  # never import torch just to free memory it never held
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
