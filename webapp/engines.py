"""Model engines for the workers: resolve model names and keep loaded backends for the process's life.

A GPU worker runs one task at a time and serves many chunks of the same iteration, so a loaded model is
kept (two at most: the policy and the labeler) instead of being reloaded per chunk.
"""

import functools
import os
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
