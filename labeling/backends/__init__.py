"""Model engines behind one interface (see base.py); `load_backend` picks one by name.

Each engine is imported only when chosen: vLLM exists only on the GPU worker, and importing
transformers or openai costs time the other engines should not pay.
"""

from labeling.backends.base import Backend
from labeling.backends.coin_flip import COIN_FLIP, CoinFlipBackend

ENGINES = ("transformers", "vllm", "openai")


def load_backend(engine: str, model: str, text_model: str | None = None, **options) -> Backend:
    """The backend for `engine`; `options` go to its constructor (device, base_url, engine kwargs, ...).

    `model` is a path or hub id, except for "openai", where it is the name the server knows the model by
    (and `base_url` is required), and `coin-flip`, the control labeler of any engine (backends/coin_flip.py).
    """
    if model == COIN_FLIP:
        return CoinFlipBackend()
    if engine == "transformers":
        from labeling.backends.transformers_backend import TransformersBackend

        return TransformersBackend(model, text_model_path=text_model, **options)
    if engine == "vllm":
        from labeling.backends.vllm_backend import VLLMBackend

        return VLLMBackend(model, text_model=text_model, **options)
    if engine == "openai":
        from labeling.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(model, text_model=text_model, **options)
    raise ValueError(f"unknown engine {engine!r}; known engines: {', '.join(ENGINES)}")
