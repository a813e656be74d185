"""Any OpenAI-compatible chat-completions server (`vllm serve`, OpenAI, ...) as a Backend.

All three calls go through chat completions, so the server applies the model's own chat template (the
text LLM of `complete` included). Timeouts and retries are the `openai` client's: connection errors,
timeouts, 408, 409, 429 and 5xx are retried with exponential backoff (0.5 s doubling up to 8 s, with
jitter), or after the server's Retry-After when it sends one.
"""

import base64
import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from labeling.backends.base import GenerationRequest, PolarQuery, Sampling, YesNo
from labeling.backends.logprobs import yes_no_from_top_tokens

TOP_LOGPROBS = 20  # the most the OpenAI API allows
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


# Greedy, so the reported token is the top one; the logprobs themselves do not depend on temperature
# on vLLM (it reports the raw softmax by default).
YES_NO_PARAMS = {"max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": TOP_LOGPROBS}


class OpenAIBackend:
    """Backend over HTTP: one request per seed, claim or prompt, `concurrency` of them in flight.

    `text_model` names the divide step's LLM on the same server (default: `model`).
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
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.model = model
        self.text_model = text_model or model
        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = concurrency
        # `vllm serve` without --api-key takes any key, but the client refuses to start without one.
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)

    def generate(self, requests: Sequence[GenerationRequest], sampling: Sampling) -> list[list[str]]:
        # One request per seed: with the server's `n`, all candidates would share one seeded generator.
        urls = {request.image: image_data_url(request.image) for request in requests}

        def answer(job: tuple[GenerationRequest, int]) -> str:
            request, seed = job
            messages = chat_messages(request.question, urls[request.image])
            return self._text(self._chat(messages, **sampling_params(sampling, seed)))

        texts = iter(self._map(answer, [(r, seed) for r in requests for seed in r.seeds]))
        return [[next(texts) for _ in request.seeds] for request in requests]

    def yes_no(self, queries: Sequence[PolarQuery]) -> list[YesNo]:
        urls = {query.image: image_data_url(query.image) for query in queries}

        def verdict(query: PolarQuery) -> YesNo:
            return self._yes_no(self._chat(chat_messages(query.prompt, urls[query.image]), **YES_NO_PARAMS))

        return self._map(verdict, queries)

    def complete(self, prompts: Sequence[str], sampling: Sampling) -> list[str]:
        def answer(prompt: str) -> str:
            params = sampling_params(sampling, COMPLETE_SEED)
            return self._text(self._chat(chat_messages(prompt), model=self.text_model, **params))

        return self._map(answer, prompts)

    def _chat(self, messages: list[dict], model: str | None = None, **params):
        model = model or self.model
        where = f"{self.base_url} (model {model!r})"
        try:
            return self.client.chat.completions.create(model=model, messages=messages, **params)
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
        return yes_no_from_top_tokens((top.token, top.logprob) for top in first.top_logprobs or [first])

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
