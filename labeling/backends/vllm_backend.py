"""vLLM's offline engine as a Backend, for the GPU worker (vLLM is only in requirements-gpu.txt).

Prompts go through `LLM.chat`, which renders them with the model's own chat template exactly as
`vllm serve` does, so this backend and the OpenAI one send the same prompts; images travel as PIL
objects (`{"type": "image_pil"}` parts), no base64 round trip. Prefix caching is on: every claim about
one image shares the template + image prefix, so its KV cache is computed once, not once per claim.

A verdict asks for the answer tokens explicitly (labeling.backends.logprobs says which): `allowed_token_ids`
restricts the one generated token to them and `logprobs` asks for as many as there are, so every answer token
comes back whatever its rank in the full vocabulary. The engine runs with `logprobs_mode="processed_logprobs"`,
so those log-probs are taken after the restriction: each is log(p_i / Σ_answer p_j), the full-vocabulary
probability divided by the answer tokens' total. P(yes) and P(no) then sum to 1; their ratio, and so the verdict
P(yes) > P(no), is the full-vocabulary one. (vLLM's default, raw log-probs, are taken before the restriction
and list only the top k, where an answer token may be missing.)

The pure functions below build the inputs and read the outputs; tests run them against fakes shaped
like vLLM's RequestOutput / CompletionOutput / Logprob, because vLLM cannot run without a GPU.
"""

import gc
import importlib
from collections.abc import Sequence
from pathlib import Path

from labeling.backends.base import GenerationRequest, PolarQuery, Sampling, YesNo
from labeling.backends.logprobs import AnswerTokens, answer_tokens, yes_no_from_ids
from labeling.remote_code import trust_remote_code

COMPLETE_SEED = 0  # `complete` gets no seeds; a fixed one makes a rerun of the divide step give the same claims
MISSING_VLLM = (
    "The vllm engine needs the vllm package, which runs only on a GPU worker: install requirements-gpu.txt "
    "(docker/Dockerfile.gpu does), or use the transformers or openai engine."
)


def chat_messages(text: str, image=None) -> list[dict]:
    """One user turn for `LLM.chat`; the image (a PIL image) goes before the text."""
    if image is None:
        return [{"role": "user", "content": text}]
    return [{"role": "user", "content": [{"type": "image_pil", "image_pil": image}, {"type": "text", "text": text}]}]


def sampling_kwargs(sampling: Sampling, seed: int) -> dict:
    """SamplingParams for one candidate.

    Always n=1 with its own seed: a request with n>1 draws all its samples from one generator seeded once,
    so no single candidate could be reproduced from a recorded seed.
    """
    return {
        "n": 1,
        "seed": seed,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_new_tokens,
    }


def yes_no_kwargs(tokens: AnswerTokens) -> dict:
    """SamplingParams for a verdict: one greedy token among the answer tokens, with all their log-probs."""
    ids = list(tokens.ids)
    return {"n": 1, "temperature": 0.0, "max_tokens": 1, "allowed_token_ids": ids, "logprobs": len(ids)}


def output_text(output) -> str:
    """The text of a RequestOutput made with n=1."""
    return output.outputs[0].text


def output_yes_no(output, tokens: AnswerTokens) -> YesNo:
    """P(yes)/P(no) from a RequestOutput's first token: `logprobs[0]` maps token id -> Logprob."""
    completion = output.outputs[0]
    if not completion.logprobs:
        raise ValueError(f"vLLM returned no logprobs for request {output.request_id!r}; was logprobs set?")
    first = completion.logprobs[0]
    return yes_no_from_ids({token: lp.logprob for token, lp in first.items()}, tokens)


def beam_search_kwargs(sampling: Sampling) -> dict:
    """BeamSearchParams for `LLM.beam_search` (vLLM's beam search since SamplingParams lost `use_beam_search`)."""
    return {"beam_width": sampling.num_beams, "max_tokens": sampling.max_new_tokens}


def beam_prompt(text: str, image) -> dict:
    """A TextPrompt for `LLM.beam_search`: the chat-formatted text and its image (vLLM expands the placeholder)."""
    return {"prompt": text, "multi_modal_data": {"image": image}}


def beam_text(output, tokenizer) -> str:
    """The best beam's answer from a BeamSearchOutput (sequences best first).

    A sequence's tokens include the prompt, and it holds one logprobs entry per generated token, so its last
    `len(logprobs)` tokens are the answer.
    """
    best = output.sequences[0]
    answer = best.tokens[len(best.tokens) - len(best.logprobs) :]
    return tokenizer.decode(answer, skip_special_tokens=True).strip()


def load_images(paths) -> dict:
    """Each distinct image opened once, as RGB, so all seeds and claims share one PIL object."""
    from PIL import Image

    images = {}
    for path in paths:
        if path not in images:
            with Image.open(path) as image:
                images[path] = image.convert("RGB")
    return images


class VLLMBackend:
    """Backend on vLLM's offline `LLM`; engines start on first use so a stage loads only what it needs.

    `text_model` is the divide step's LLM (default: `model` itself). With both on one GPU, pass a
    `gpu_memory_utilization` that lets both engines fit (e.g. 0.45); `engine_kwargs` go to both.
    `yes_no_variants` counts " Yes" beside "Yes" (labeling.backends.logprobs).
    """

    def __init__(self, model: str, text_model: str | None = None, yes_no_variants: bool = False, **engine_kwargs):
        try:
            import vllm
        except ImportError as error:
            raise ImportError(MISSING_VLLM) from error
        self._vllm = vllm
        self.model = model
        self.text_model = text_model or model
        self.yes_no_variants = yes_no_variants
        self._answer_tokens = None
        # Safetensors only: vLLM's default ("auto") falls back to a pickled pytorch_model.bin. Processed log-probs:
        # a verdict's are taken over the answer tokens it is restricted to (see the module).
        self.engine_kwargs = {
            "enable_prefix_caching": True,
            "load_format": "safetensors",
            "logprobs_mode": "processed_logprobs",
            **engine_kwargs,
        }
        self._engines = {}

    def engine(self, model: str):
        if model not in self._engines:
            # Only a folder staff marked runs its own code (labeling.remote_code); others are refused or load as usual.
            trusted = {"trust_remote_code": True} if trust_remote_code(model) else {}
            self._engines[model] = self._vllm.LLM(model=model, **trusted, **self.engine_kwargs)
        return self._engines[model]

    def shutdown(self) -> None:
        """Stop every engine and free its GPU memory, so the worker's next model can load.

        Dropping the `LLM` is not enough (vllm-project/vllm#1908): its engine core runs in its own process until
        told to stop. `LLM.shutdown()` does that where vLLM has it; older releases stop the engine core directly.
        Then the parallel state and the CUDA cache go (`cleanup_dist_env_and_memory`).
        """
        engines, self._engines = list(self._engines.values()), {}
        for llm in engines:
            stop = getattr(llm, "shutdown", None) or llm.llm_engine.engine_core.shutdown
            stop()
        del engines, llm
        gc.collect()
        try:
            parallel_state = importlib.import_module("vllm.distributed.parallel_state")
        except ImportError:
            return
        cleanup = getattr(parallel_state, "cleanup_dist_env_and_memory", None)
        if cleanup is not None:
            cleanup()

    def _chat(self, model: str, conversations: list, params: list[dict]):
        if not conversations:
            return []
        sampling = [self._vllm.SamplingParams(**kwargs) for kwargs in params]
        return self.engine(model).chat(conversations, sampling, use_tqdm=False)

    def generate(self, requests: Sequence[GenerationRequest], sampling: Sampling) -> list[list[str]]:
        if sampling.num_beams > 1:
            return self._beam_search(requests, sampling)
        images = load_images(Path(r.image) for r in requests)
        jobs = [(r, seed) for r in requests for seed in r.seeds]
        outputs = self._chat(
            self.model,
            [chat_messages(r.question, images[Path(r.image)]) for r, _ in jobs],
            [sampling_kwargs(sampling, seed) for _, seed in jobs],
        )
        texts = iter(output_text(output) for output in outputs)
        return [[next(texts) for _ in r.seeds] for r in requests]

    def _beam_search(self, requests: Sequence[GenerationRequest], sampling: Sampling) -> list[list[str]]:
        """One beam search per request (it draws nothing at random: every seed gets its text). `LLM.beam_search`
        takes prompts, not chats, so the model's own processor writes the chat prompt, as `LLM.chat` would."""
        if not requests:
            return []
        from labeling.processors import load_processor

        processor = load_processor(self.model)
        images = load_images(Path(r.image) for r in requests)
        prompts = [
            beam_prompt(
                processor.apply_chat_template(
                    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": r.question}]}],
                    add_generation_prompt=True,
                    tokenize=False,
                ),
                images[Path(r.image)],
            )
            for r in requests
        ]
        engine = self.engine(self.model)
        params = importlib.import_module("vllm.sampling_params").BeamSearchParams(**beam_search_kwargs(sampling))
        outputs = engine.beam_search(prompts, params)
        tokenizer = engine.get_tokenizer()
        return [[beam_text(output, tokenizer)] * len(r.seeds) for output, r in zip(outputs, requests, strict=True)]

    def answer_tokens(self) -> AnswerTokens:
        """The labeler's yes and no token ids, from its engine's tokenizer."""
        if self._answer_tokens is None:
            tokenizer = self.engine(self.model).get_tokenizer()
            self._answer_tokens = answer_tokens(
                lambda text: tokenizer.encode(text, add_special_tokens=False),
                lambda token: tokenizer.decode([token]),
                variants=self.yes_no_variants,
            )
        return self._answer_tokens

    def yes_no(self, queries: Sequence[PolarQuery]) -> list[YesNo]:
        if not queries:
            return []
        tokens = self.answer_tokens()
        images = load_images(Path(q.image) for q in queries)
        outputs = self._chat(
            self.model,
            [chat_messages(q.prompt, images[Path(q.image)]) for q in queries],
            [yes_no_kwargs(tokens) for _ in queries],
        )
        return [output_yes_no(output, tokens) for output in outputs]

    def complete(self, prompts: Sequence[str], sampling: Sampling) -> list[str]:
        outputs = self._chat(
            self.text_model,
            [chat_messages(prompt) for prompt in prompts],
            [sampling_kwargs(sampling, COMPLETE_SEED) for _ in prompts],
        )
        return [output_text(output) for output in outputs]
