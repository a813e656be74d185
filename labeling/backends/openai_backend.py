"""Any OpenAI-compatible chat-completions server (`vllm serve`, OpenAI, ...) as a Backend.

All three calls go through chat completions, so the server applies the model's own chat template (the
text LLM of `complete` included). Timeouts and retries are the `openai` client's: connection errors,
timeouts, 408, 409, 429 and 5xx are retried with exponential backoff (0.5 s doubling up to 8 s, with
jitter), or after the server's Retry-After when it sends one.

A verdict asks for the answer tokens explicitly (labeling.backends.logprobs says which ids; the server's
tokenizer gives them, through vLLM's `/tokenize` and `/detokenize` beside `/v1`): `logit_bias` adds
+100 to each of their logits, so they are the top ones of the first position and `top_logprobs`, set to their
number, returns all of them whatever their rank without the bias. Adding b to the logits of a set S turns
p_i into p_i·e^b / (e^b·p(S) + 1 − p(S)) for i in S: every answer token's probability is multiplied by the same
factor, so their ratio, and the verdict P(yes) > P(no), is the full-vocabulary one; with b = 100 the factor is
1 / p(S), so the reported P(yes) and P(no) sum to 1. A server that reports log-probs before the bias (vLLM's
default `--logprobs-mode raw_logprobs`) still samples under it, so its chosen token is the likeliest answer
token and comes back with its full-vocabulary log-prob; start it with `--logprobs-mode processed_logprobs` to
get every answer token's.
"""

import base64
import io
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from labeling.backends.base import GenerationRequest, PolarQuery, Sampling, YesNo
from labeling.backends.logprobs import AnswerTokens, answer_tokens, yes_no_from_top_tokens

ANSWER_BIAS = 100  # the most the OpenAI API allows: the answer tokens outrank every other token
COMPLETE_SEED = 0  # `complete` gets no seeds; a fixed one makes a rerun of the divide step give the same claims


class OpenAIBackendError(RuntimeError):
    """A request failed for good (after the retries); the message names the server, model and cause."""


def image_data_url(path: Path) -> str:
    """The image file as a base64 data URL: PNG and JPEG as they are, anything else re-encoded as PNG."""
    data = Path(path).read_bytes()
    if data.startswith(b"\x89PNG"):
        mime = "image/png"
    elif data.startswith(b"\xff\xd8\xff"):
        mime = "image/jpeg"
    else:
        from PIL import Image

        buffer = io.BytesIO()
        with Image.open(io.BytesIO(data)) as image:
            image.convert("RGB").save(buffer, "PNG")
        data, mime = buffer.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def chat_messages(text: str, image_url: str | None = None) -> list[dict]:
    """One user turn; the image goes before the text, as LLaVA-style templates place it."""
    if image_url is None:
        return [{"role": "user", "content": text}]
    content = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": text}]
    return [{"role": "user", "content": content}]


def sampling_params(sampling: Sampling, seed: int) -> dict:
    return {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_new_tokens,
        "seed": seed,
    }


def yes_no_params(tokens: AnswerTokens) -> dict:
    """One greedy token with every answer token among the top log-probs (see the module)."""
    return {
        "max_tokens": 1,
        "temperature": 0.0,
        "logprobs": True,
        "top_logprobs": len(tokens.ids),
        "logit_bias": {str(token): ANSWER_BIAS for token in tokens.ids},
    }


class OpenAIBackend:
    """Backend over HTTP: one request per seed, claim or prompt, `concurrency` of them in flight.

    `text_model` names the divide step's LLM on the same server (default: `model`); `yes_no_variants` counts
    " Yes" beside "Yes" (labeling.backends.logprobs).
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 4,
        concurrency: int = 8,
        text_model: str | None = None,
        yes_no_variants: bool = False,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.model = model
        self.text_model = text_model or model
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.yes_no_variants = yes_no_variants
        self._answer_tokens = None
        self._answer_lock = threading.Lock()
        # `vllm serve` without --api-key takes any key, but the client refuses to start without one.
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)

    def generate(self, requests: Sequence[GenerationRequest], sampling: Sampling) -> list[list[str]]:
        if sampling.num_beams > 1:
            raise OpenAIBackendError(
                f"{self.base_url}: the chat completions API has no beam search; evaluate with eval_num_beams 1, "
                "or with the transformers or vllm engine"
            )
        # One request per seed: with the server's `n`, all candidates would share one seeded generator.
        urls = {request.image: image_data_url(request.image) for request in requests}

        def answer(job: tuple[GenerationRequest, int]) -> str:
            request, seed = job
            messages = chat_messages(request.question, urls[request.image])
            return self._text(self._chat(messages, **sampling_params(sampling, seed)))

        texts = iter(self._map(answer, [(r, seed) for r in requests for seed in r.seeds]))
        return [[next(texts) for _ in request.seeds] for request in requests]

    def answer_tokens(self) -> AnswerTokens:
        """The labeler's yes and no token ids, from the server's tokenizer (asked once)."""
        with self._answer_lock:
            if self._answer_tokens is None:
                root = self.base_url.rstrip("/").removesuffix("/v1")

                def encode(text: str) -> list[int]:
                    body = {"model": self.model, "prompt": text, "add_special_tokens": False}
                    return self._post(f"{root}/tokenize", body)["tokens"]

                def decode(token: int) -> str:
                    return self._post(f"{root}/detokenize", {"model": self.model, "tokens": [token]})["prompt"]

                self._answer_tokens = answer_tokens(encode, decode, variants=self.yes_no_variants)
        return self._answer_tokens

    def yes_no(self, queries: Sequence[PolarQuery]) -> list[YesNo]:
        if not queries:
            return []
        params = yes_no_params(self.answer_tokens())
        urls = {query.image: image_data_url(query.image) for query in queries}

        def verdict(query: PolarQuery) -> YesNo:
            return self._yes_no(self._chat(chat_messages(query.prompt, urls[query.image]), **params))

        return self._map(verdict, queries)

    def complete(self, prompts: Sequence[str], sampling: Sampling) -> list[str]:
        def answer(prompt: str) -> str:
            params = sampling_params(sampling, COMPLETE_SEED)
            return self._text(self._chat(chat_messages(prompt), model=self.text_model, **params))

        return self._map(answer, prompts)

    def _chat(self, messages: list[dict], model: str | None = None, **params):
        model = model or self.model
        return self._call(model, lambda: self.client.chat.completions.create(model=model, messages=messages, **params))

    def _post(self, url: str, body: dict) -> dict:
        """A JSON request to one of the server's own endpoints (vLLM's /tokenize, /detokenize)."""
        return self._call(self.model, lambda: self.client.post(url, cast_to=object, body=body))

    def _call(self, model: str, request: Callable):
        """`request()`, its failures turned into an OpenAIBackendError naming the server, the model and the cause."""
        where = f"{self.base_url} (model {model!r})"
        try:
            return request()
        except openai.APITimeoutError as error:
            raise OpenAIBackendError(
                f"{where}: no answer within {self.timeout} s, {self.max_retries + 1} attempts"
            ) from error
        except openai.APIConnectionError as error:
            raise OpenAIBackendError(f"{where}: cannot connect ({error.__cause__ or error})") from error
        except openai.APIStatusError as error:
            retried = error.status_code in (408, 409, 429) or error.status_code >= 500
            after = f" (after {self.max_retries} retries)" if retried else ""
            raise OpenAIBackendError(f"{where}: HTTP {error.status_code}{after}: {error.message}") from error

    def _text(self, completion) -> str:
        return completion.choices[0].message.content or ""

    def _yes_no(self, completion) -> YesNo:
        logprobs = completion.choices[0].logprobs
        if logprobs is None or not logprobs.content:
            raise OpenAIBackendError(
                f"{self.base_url} (model {self.model!r}) returned no logprobs; yes/no needs a server that "
                "supports logprobs and top_logprobs"
            )
        first = logprobs.content[0]
        verdict = yes_no_from_top_tokens((top.token, top.logprob) for top in [first, *(first.top_logprobs or [])])
        if verdict.p_yes == verdict.p_no == 0:
            raise OpenAIBackendError(
                f"{self.base_url} (model {self.model!r}) answered {first.token!r}, not yes or no: it ignored "
                "logit_bias, which yes/no needs"
            )
        return verdict

    def _map(self, fn: Callable, items: Sequence) -> list:
        """fn over items on `concurrency` threads, results in order; the first failure cancels the rest."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
