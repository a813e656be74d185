"""VLLMBackend's request building and output parsing, against fakes shaped like vLLM's documented classes.

vLLM cannot run here (it needs a CUDA torch and a GPU), so `vllm` is replaced by a fake module whose
`LLM.chat` records what it was given and answers with RequestOutput-shaped objects.
"""

import math
import sys
import types
from dataclasses import dataclass, field

import pytest
from PIL import Image

from labeling.backends import ENGINES, load_backend
from labeling.backends.base import GenerationRequest, PolarQuery, Sampling
from labeling.backends.logprobs import AnswerTokens
from labeling.backends.vllm_backend import (
    VLLMBackend,
    chat_messages,
    output_text,
    output_yes_no,
    sampling_kwargs,
    yes_no_kwargs,
)


@dataclass
class Logprob:  # vllm.logprobs.Logprob
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:  # vllm.outputs.CompletionOutput
    index: int
    text: str
    token_ids: list[int] = field(default_factory=list)
    cumulative_logprob: float | None = None
    logprobs: list[dict[int, Logprob]] | None = None
    finish_reason: str | None = "stop"


@dataclass
class RequestOutput:  # vllm.outputs.RequestOutput
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    prompt_logprobs: None
    outputs: list[CompletionOutput]
    finished: bool = True


class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


# A word-level tokenizer where "\n" is a token of its own, and "Yes" and " Yes" are two others.
VOCAB = ["\n", "Yes", "yes", " Yes", "No", "no", " No", "Maybe"]
# The labeler's first-token probabilities: " Yes" would make it a yes, the reference's four tokens a no.
FIRST_TOKEN = {"Yes": 0.2, "yes": 0.05, " Yes": 0.4, "No": 0.25, "no": 0.05, " No": 0.0, "Maybe": 0.05}


class Tokenizer:
    def encode(self, text, add_special_tokens=True):
        assert not add_special_tokens
        if text.startswith("\n"):
            return [0, *self.encode(text[1:], add_special_tokens)]
        return [VOCAB.index(text) if text in VOCAB else VOCAB.index("Maybe")] if text else []

    def decode(self, ids):
        return "".join(VOCAB[i] for i in ids)


class LLM:
    """Answers `question #seed`, or as vLLM does with processed log-probs when log-probs are asked for: the
    first token's log-probs over `allowed_token_ids` (FIRST_TOKEN renormalised over them)."""

    def __init__(self, model, **kwargs):
        self.model, self.kwargs, self.calls = model, kwargs, []

    def get_tokenizer(self):
        return Tokenizer()

    def chat(self, messages, sampling_params, use_tqdm=True):
        self.calls.append((messages, sampling_params))
        outputs = []
        for i, (conversation, params) in enumerate(zip(messages, sampling_params, strict=True)):
            content = conversation[0]["content"]
            text = content if isinstance(content, str) else content[-1]["text"]
            if params.kwargs.get("logprobs"):
                assert self.kwargs["logprobs_mode"] == "processed_logprobs"
                allowed = params.kwargs["allowed_token_ids"]
                total = sum(FIRST_TOKEN.get(VOCAB[i], 0) for i in allowed)
                ranked = sorted(allowed, key=lambda i: -FIRST_TOKEN.get(VOCAB[i], 0))[: params.kwargs["logprobs"]]
                top = {
                    i: Logprob(math.log(FIRST_TOKEN[VOCAB[i]] / total or 1e-300), r, VOCAB[i])
                    for r, i in enumerate(ranked)
                }
                completion = CompletionOutput(0, VOCAB[ranked[0]], [ranked[0]], None, [top])
            else:
                completion = CompletionOutput(0, f"{text} #{params.kwargs['seed']}")
            outputs.append(RequestOutput(str(i), None, [1, 2], None, [completion]))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams)
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


@pytest.fixture
def image_path(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (8, 8), "red").save(path)
    return path


def test_it_asks_for_one_seeded_sample_per_candidate():
    assert sampling_kwargs(Sampling(temperature=0.7, top_p=0.9, max_new_tokens=512), seed=42) == {
        "n": 1,
        "seed": 42,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 512,
    }


def test_it_asks_for_one_greedy_token_among_the_answer_tokens_with_all_their_logprobs():
    assert yes_no_kwargs(AnswerTokens(yes=(1, 2), no=(4, 5))) == {
        "n": 1,
        "temperature": 0.0,
        "max_tokens": 1,
        "allowed_token_ids": [1, 2, 4, 5],
        "logprobs": 4,
    }


def test_it_puts_the_image_before_the_question():
    image = Image.new("RGB", (2, 2))

    assert chat_messages("Is it red?", image) == [
        {"role": "user", "content": [{"type": "image_pil", "image_pil": image}, {"type": "text", "text": "Is it red?"}]}
    ]
    assert chat_messages("Split this.") == [{"role": "user", "content": "Split this."}]


def test_it_sums_the_answer_tokens_of_the_first_position_by_id():
    top = {
        1: Logprob(math.log(0.5), 1, "Yes"),
        2: Logprob(math.log(0.2), 2, "no"),
        3: Logprob(math.log(0.1), 3, "yes"),
        4: Logprob(math.log(0.1), 4, "No"),
        9: Logprob(math.log(0.05), 5, "Yes"),  # another id spelling "Yes" (" Yes"): not an answer token
    }
    second = {4: Logprob(math.log(0.99), 1, "No")}  # later positions do not count
    output = RequestOutput("0", None, [], None, [CompletionOutput(0, "Yes", [1, 4], None, [top, second])])

    verdict = output_yes_no(output, AnswerTokens(yes=(1, 3), no=(4, 2)))

    assert verdict.p_yes == pytest.approx(0.6) and verdict.p_no == pytest.approx(0.3)
    assert verdict.accepted


def test_it_refuses_an_output_without_logprobs():
    output = RequestOutput("3", None, [], None, [CompletionOutput(0, "Yes")])

    with pytest.raises(ValueError, match="no logprobs for request '3'"):
        output_yes_no(output, AnswerTokens(yes=(1,), no=(2,)))


def test_it_reads_the_text_of_the_one_sample():
    assert output_text(RequestOutput("0", None, [], None, [CompletionOutput(0, "A red square.")])) == "A red square."


def test_it_generates_through_llm_chat_with_prefix_caching(fake_vllm, image_path):
    backend = VLLMBackend("llava-hf/llava-1.5-7b-hf", gpu_memory_utilization=0.5)
    requests = [GenerationRequest(image_path, "What is red?", (3, 1)), GenerationRequest(image_path, "Why?", (5,))]

    texts = backend.generate(requests, Sampling(temperature=0.7, max_new_tokens=16))

    assert texts == [["What is red? #3", "What is red? #1"], ["Why? #5"]]
    engine = backend.engine("llava-hf/llava-1.5-7b-hf")
    assert engine.kwargs == {
        "enable_prefix_caching": True,
        "load_format": "safetensors",
        "logprobs_mode": "processed_logprobs",
        "gpu_memory_utilization": 0.5,
    }
    [(conversations, params)] = engine.calls
    assert [p.kwargs["seed"] for p in params] == [3, 1, 5]
    images = {id(conversation[0]["content"][0]["image_pil"]) for conversation in conversations}
    assert len(images) == 1  # the image is opened once and shared, so vLLM hashes and caches one prefix


def test_it_labels_and_completes_on_their_own_engines(fake_vllm, image_path):
    backend = VLLMBackend("labeler", text_model="splitter")

    [verdict] = backend.yes_no([PolarQuery(image_path, "Is it red? Please answer yes or no.")])
    texts = backend.complete(["Split this."], Sampling(temperature=0.2, top_p=0.9, max_new_tokens=256))

    # one token per word: p(Yes) + p(yes) against p(No) + p(no), over the four's total
    assert (verdict.p_yes, verdict.p_no) == (pytest.approx(0.25 / 0.55), pytest.approx(0.3 / 0.55))
    assert not verdict.accepted
    assert texts == ["Split this. #0"]
    asked = backend.engine("labeler").calls[0][1][0].kwargs
    assert asked["allowed_token_ids"] == [VOCAB.index(word) for word in ("Yes", "yes", "No", "no")]
    assert backend.engine("splitter").calls[0][0] == [[{"role": "user", "content": "Split this."}]]


def test_an_option_counts_the_spelling_after_a_space_too(fake_vllm, image_path):
    backend = VLLMBackend("labeler", yes_no_variants=True)

    [verdict] = backend.yes_no([PolarQuery(image_path, "Is it red? Please answer yes or no.")])

    assert (verdict.p_yes, verdict.p_no) == (pytest.approx(0.65 / 0.95), pytest.approx(0.3 / 0.95))
    assert verdict.accepted
    assert "yes_no_variants" not in backend.engine("labeler").kwargs  # the backend's option, not vLLM's


def test_it_starts_no_engine_for_an_empty_batch(fake_vllm):
    backend = VLLMBackend("labeler")

    assert backend.yes_no([]) == [] and backend.generate([], Sampling()) == []
    assert backend._engines == {}


def test_it_imports_without_vllm_and_says_where_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail, as on this machine

    with pytest.raises(ImportError, match="requirements-gpu.txt"):
        VLLMBackend("llava-hf/llava-1.5-7b-hf")
    with pytest.raises(ImportError, match="requirements-gpu.txt"):
        load_backend("vllm", "llava-hf/llava-1.5-7b-hf")


def test_it_loads_the_openai_backend_by_name():
    backend = load_backend("openai", "tiny-llava", text_model="tiny-lm", base_url="http://127.0.0.1:8000/v1")

    assert (type(backend).__name__, backend.model, backend.text_model) == ("OpenAIBackend", "tiny-llava", "tiny-lm")


def test_it_lists_the_known_engines_for_an_unknown_one():
    with pytest.raises(ValueError, match="unknown engine 'tgi'; known engines: transformers, vllm, openai"):
        load_backend("tgi", "some-model")
    assert ENGINES == ("transformers", "vllm", "openai")


class OlderLLM(LLM):
    """A vLLM without `LLM.shutdown`: its engine core is stopped directly."""

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.llm_engine = types.SimpleNamespace(engine_core=types.SimpleNamespace(shutdown=self.stop))
        self.stopped = False

    def stop(self):
        self.stopped = True


class NewerLLM(OlderLLM):
    def shutdown(self):
        self.stopped = "LLM.shutdown"


@pytest.mark.parametrize(("llm_class", "how"), [(NewerLLM, "LLM.shutdown"), (OlderLLM, True)])
def test_it_shuts_every_engine_down_and_frees_the_parallel_state(fake_vllm, monkeypatch, image_path, llm_class, how):
    cleanups = []
    parallel_state = types.SimpleNamespace(cleanup_dist_env_and_memory=lambda: cleanups.append(True))
    monkeypatch.setitem(sys.modules, "vllm.distributed.parallel_state", parallel_state)
    monkeypatch.setattr(fake_vllm, "LLM", llm_class)
    backend = VLLMBackend("labeler", text_model="splitter", tensor_parallel_size=4, max_num_seqs=64)
    backend.yes_no([PolarQuery(image_path, "Is it red?")])
    backend.complete(["Split this."], Sampling())
    engines = [backend.engine("labeler"), backend.engine("splitter")]

    backend.shutdown()

    assert [engine.stopped for engine in engines] == [how, how]
    assert cleanups == [True] and backend._engines == {}
    assert engines[0].kwargs["tensor_parallel_size"] == 4 and engines[0].kwargs["max_num_seqs"] == 64
