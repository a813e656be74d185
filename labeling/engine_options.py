"""How a model engine is started: checked options, the GPUs a model needs, and the memory it will hold.

One set of options per model role (policy, labeler, splitter). vLLM's are its engine arguments, passed to
`vllm.LLM` as they are; the transformers engine takes a dtype, a `device_map` that spreads a model over the
worker's GPUs (accelerate's big-model loading) and an attention implementation. Two options belong to every
engine that runs on the worker: `gpus`, the GPUs one copy of the model needs (it names the queue its work goes
to), and `memory_gb`, what the loaded engine holds on the GPUs, which a worker's memory budget is checked against.
Every engine takes `yes_no_variants`: true counts the answers' other first tokens (" Yes" beside "Yes") in a
verdict, where the default is the reference's one token per word (labeling.backends.logprobs).
"""

from pathlib import Path

DTYPES = ("auto", "float16", "bfloat16", "float32")
ATTENTION = ("eager", "sdpa", "flash_attention_2")
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
GIB = 1024**3
# Above the weights, a transformers engine holds activations and a KV cache; a rough share for the estimate.
TRANSFORMERS_OVERHEAD = 1.2


def _positive_int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def _share(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError("must be a number above 0 and at most 1 (the share of each GPU's memory)")
    return float(value)


def _gigabytes(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError("must be a positive number of GiB")
    return float(value)


def _flag(value) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _one_of(choices):
    def check(value):
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return check


COMMON = {"gpus": _positive_int, "memory_gb": _gigabytes}
VERDICT = {"yes_no_variants": _flag}  # the backend's own, in every engine
OPTIONS = {
    "vllm": COMMON
    | {
        "dtype": _one_of(DTYPES),
        "tensor_parallel_size": _positive_int,
        "gpu_memory_utilization": _share,
        "max_model_len": _positive_int,
        "max_num_seqs": _positive_int,
    }
    | VERDICT,
    "transformers": COMMON
    | {"dtype": _one_of(DTYPES), "device_map": _one_of(DEVICE_MAPS), "attn_implementation": _one_of(ATTENTION)}
    | VERDICT,
    "openai": VERDICT,  # the rest is the server's own business
}


def check_options(engine: str, options) -> dict:
    """The options, checked; a ValueError names the bad one and says what it takes."""
    if engine not in OPTIONS:
        raise ValueError(f"unknown engine {engine!r}; known engines: {', '.join(OPTIONS)}")
    if not isinstance(options, dict):
        raise ValueError(f"engine options must be a JSON object, not {type(options).__name__}")
    known = OPTIONS[engine]
    checked = {}
    for name, value in options.items():
        if name not in known:
            takes = ", ".join(known) or "none"
            raise ValueError(f"engine {engine} has no option {name!r} (it takes: {takes})")
        try:
            checked[name] = known[name](value)
        except ValueError as error:
            raise ValueError(f"engine option {name}={value!r} {error}") from None
    parallel = checked.get("tensor_parallel_size", 1)
    if engine == "vllm" and checked.get("gpus", parallel) != parallel:
        raise ValueError(f"engine option gpus={checked['gpus']} must equal tensor_parallel_size={parallel}")
    return checked


def gpus_needed(engine: str, options: dict) -> int:
    """The GPUs one copy of the model is spread over; 0 for a model served elsewhere (openai)."""
    if engine == "openai":
        return 0
    return options.get("gpus") or options.get("tensor_parallel_size") or 1


def backend_options(engine: str, options: dict) -> dict:
    """What the backend's constructor takes from the options (the common ones are the worker's, not the engine's)."""
    own = {name: value for name, value in options.items() if name not in COMMON}
    if engine == "transformers" and own.get("dtype") == "auto":
        own.pop("dtype")  # transformers' default: the checkpoint's own dtype
    return own


def weights_bytes(model_path) -> int:
    """The size of a local model's safetensors files; 0 where there are none (a hub id, a remote model)."""
    path = Path(model_path)
    return sum(f.stat().st_size for f in path.glob("*.safetensors")) if path.is_dir() else 0


def memory_estimate(engine: str, options: dict, model_path, gpu_bytes: int) -> int:
    """Bytes the loaded engine will hold on the GPUs: `memory_gb` when given; vLLM takes its share of every GPU
    it is spread over whatever the model's size; transformers holds about its weights plus activations."""
    if engine == "openai":
        return 0
    if "memory_gb" in options:
        return int(options["memory_gb"] * GIB)
    if engine == "vllm":
        return int(options.get("gpu_memory_utilization", 0.9) * gpu_bytes * gpus_needed(engine, options))
    return int(weights_bytes(model_path) * TRANSFORMERS_OVERHEAD)
