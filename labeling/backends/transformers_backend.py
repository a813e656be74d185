"""The default engine: a Hugging Face vision-language model on CPU or GPU.

Where the reference labels one claim per forward with the image re-encoded every time, `yes_no` runs each
image's prompt prefix (`USER: <image>` and its image tokens) once and scores all of that image's questions
in one batched forward on a copy of that prefix's KV cache. `generate` samples with one RNG per candidate
seed (see `seeded_sampling`), so a seed gives the same text whatever else is in the batch.

Both work on every family of `labeling.tiny_models.FAMILIES` (LLaVA-1.5, Qwen2-VL, Qwen2.5-VL, Gemma 3,
LLaVA-NeXT, LLaVA-OneVision, Idefics3): prompts are tokenised exactly as the processor does (each image placeholder
replaced by the text the processor gives for that image: its tiles, its dynamic-resolution token count,
Gemma's begin/end-of-image markers), per-token modality ids go with the prompt (Gemma's bidirectional
attention over an image, Qwen's M-RoPE), and positions follow the model's own rules (`positions`).
"""

import copy
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby

import torch
from PIL import Image
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

from labeling.backends.base import GenerationRequest, PolarQuery, Sampling, YesNo
from labeling.backends.logprobs import answer_tokens
from labeling.backends.positions import next_positions, prompt_positions
from labeling.backends.seeded_sampling import sample_rows
from labeling.batching import batched
from labeling.processors import load_processor
from labeling.remote_code import trust_remote_code

# What a processor returns about the text rather than the image; the per-token modality ids are one of the
# last two (Qwen: mm_token_type_ids, Gemma 3: token_type_ids) and are rebuilt for every prompt.
TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")
PROBE_PX = 64  # a blank image of this size tells which per-token ids the processor returns


@dataclass
class ImageInputs:
    """An image as the model takes it: processor outputs (pixel_values, ...) and the text its placeholder
    expands to (its image tokens, and the markers and tile tags of families that have them)."""

    tensors: dict
    replacement: str

    @property
    def stack_key(self) -> tuple:
        """Images whose tensors concatenate into one batch: the same shapes past the first dimension."""
        return tuple((key, tuple(value.shape[1:])) for key, value in self.tensors.items())


@dataclass
class ImageQuestions:
    """One image's questions as token ids, and how many leading ids all of them share with the prefix."""

    image: ImageInputs
    indices: list[int]
    ids: list[list[int]]
    shared: int

    @property
    def batch_key(self) -> tuple:
        """Images whose prefixes can run as one batch: same prefix length, tensors that concatenate."""
        return self.shared, self.image.stack_key


def load_image(path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def cache_rows(cache, rows: torch.Tensor):
    """A cache holding `rows` of `cache`'s batch, each layer of the same kind (full or sliding window).

    Layers replace their tensors rather than write into them, so copying the layer objects (not their
    tensors) before selecting leaves `cache` as it was, for the next batch of questions.
    """
    copied = copy.copy(cache)
    copied.layers = [copy.copy(layer) for layer in cache.layers]
    copied.batch_select_indices(rows)
    return copied


def prefetched(fn: Callable, args: Iterable, ahead: int) -> Iterator:
    """fn(arg) for each arg in order, computed by a background thread up to `ahead` items early.

    Decoding and resizing images (PIL releases the GIL) then overlaps the model's forwards instead of
    adding to them; the bound keeps at most `ahead` processed images in memory.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque = deque()
        for arg in args:
            pending.append(pool.submit(fn, arg))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def chunk_images(items: Iterable[ImageQuestions], batch_size: int) -> Iterator[list[ImageQuestions]]:
    """Consecutive images whose questions fit in `batch_size` rows (an image with more stands alone).

    Images of one chunk share a `batch_key`, so their prefixes run as one batch.
    """
    chunk: list[ImageQuestions] = []
    for item in items:
        n_rows = sum(len(other.indices) for other in chunk)
        if chunk and (n_rows + len(item.indices) > batch_size or item.batch_key != chunk[0].batch_key):
            yield chunk
            chunk = []
        chunk.append(item)
    if chunk:
        yield chunk


class TransformersBackend:
    """Backend on a local checkpoint; `text_model_path` is the divide step's text LLM (default: the VLM).

    `batch_size` counts rows per forward: questions when labelling, candidates when sampling.
    """

    def __init__(
        self, model_path, text_model_path=None, device="cpu", dtype=None, batch_size=32, device_map=None,
        attn_implementation=None, yes_no_variants=False,
    ):  # fmt: skip
        """`device_map` (e.g. "auto") spreads the model over the worker's GPUs instead of putting it on `device`;
        `yes_no_variants` counts " Yes" beside "Yes" (labeling.backends.logprobs)."""
        self.batch_size = batch_size
        self.processor = load_processor(model_path)
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        # Safetensors only: a pickled pytorch_model.bin could run code when loaded.
        model = AutoModelForImageTextToText.from_pretrained(
            model_path,
            dtype=dtype,
            use_safetensors=True,
            device_map=device_map,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code(model_path),
        )
        self.model = (model if device_map else model.to(device)).eval()
        self.device = self.model.device  # with a device map, where its inputs go (the first layers' GPU)
        self.text_model_path = text_model_path
        self._text = None
        tokens = answer_tokens(
            lambda text: self.tokenizer.encode(text, add_special_tokens=False),
            lambda token: self.tokenizer.decode([token]),
            variants=yes_no_variants,
        )
        self.yes_ids, self.no_ids = list(tokens.yes), list(tokens.no)
        self.eos_ids = self._eos_ids(self.model, self.tokenizer)
        probe = self.processor(text=[self.processor.image_token], images=[Image.new("RGB", (PROBE_PX, PROBE_PX))])
        self.token_type_key = next((key for key in TEXT_KEYS[2:] if key in probe), None)
        self.sliding_window = getattr(self.model.config.get_text_config(), "sliding_window", None)

    # ---- prompts and images -------------------------------------------------------------------------

    def _chat(self, question: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _image_inputs(self, path) -> ImageInputs:
        """Process an image file with the full processor, which also says what its placeholder becomes."""
        encoded = self.processor(
            text=[self.processor.image_token],
            images=[load_image(path)],
            return_tensors="pt",
            return_text_replacement_offsets=True,
        )
        replacement = encoded.pop("text_replacement_offsets")[0][0]["replacement"]
        tensors = {key: value.to(self.device) for key, value in encoded.items() if key not in TEXT_KEYS}
        return ImageInputs(tensors, replacement)

    def _token_ids(self, texts: Sequence[str], image: ImageInputs) -> list[list[int]]:
        """Token ids as the processor gives them: the image placeholder replaced by the image's text, then
        the whole text tokenised (a tokenizer may merge the markers' newlines with their neighbours)."""
        expanded, _ = self.processor.get_text_with_replacements(list(texts), [image.replacement] * len(texts))
        return self.tokenizer(expanded)["input_ids"]

    def _batch(self, ids: Sequence[Sequence[int]]) -> dict:
        """Left-pad token ids into input_ids / attention_mask tensors."""
        width = max(len(row) for row in ids)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.tensor([[pad] * (width - len(row)) + list(row) for row in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in ids], device=self.device)
        return {"input_ids": input_ids, "attention_mask": mask}

    def _prompt_batch(self, ids: Sequence[Sequence[int]], images: Sequence[ImageInputs]) -> dict:
        """Model inputs for prompts holding one image each: ids, mask, per-token modality ids, image tensors."""
        inputs = self._batch(ids)
        if self.token_type_key:
            types = self.processor.create_mm_token_type_ids(inputs["input_ids"].tolist())
            inputs[self.token_type_key] = torch.tensor(types, device=self.device)
        for key in images[0].tensors:
            inputs[key] = torch.cat([image.tensors[key] for image in images])
        return inputs

    @staticmethod
    def _eos_ids(model, tokenizer) -> set[int]:
        eos = model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        return ids | {tokenizer.eos_token_id} - {None}

    # ---- generate ----------------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest], sampling: Sampling) -> list[list[str]]:
        """Sample each request once per seed, `batch_size` candidates at a time, one prefill per prompt.

        Each image is processed once per call, however many requests share it. A batch holds images whose
        tensors concatenate (any for fixed-resolution or Qwen processors; the same tile count for tiling
        ones), so rows are grouped by that first; a seed's text does not depend on its batch.
        """
        if sampling.num_beams > 1:
            return self._beam_search(requests, sampling)
        images = {str(path): self._image_inputs(path) for path in dict.fromkeys(r.image for r in requests)}
        rows = [(r, seed) for r, request in enumerate(requests) for seed in request.seeds]
        texts: dict[tuple[int, int], str] = {}
        for chunk in self._batches(rows, key=lambda row: images[str(requests[row[0]].image)].stack_key):
            prompts = list(dict.fromkeys(r for r, _ in chunk))
            chunk_images = [images[str(requests[r].image)] for r in prompts]
            inputs = self._prompt_batch(
                [
                    self._token_ids([self._chat(requests[r].question)], image)[0]
                    for r, image in zip(prompts, chunk_images, strict=True)
                ],
                chunk_images,
            )
            tokens = sample_rows(
                self.model,
                inputs,
                rows=[prompts.index(r) for r, _ in chunk],
                seeds=[seed for _, seed in chunk],
                sampling=sampling,
                eos_ids=self.eos_ids,
            )
            for (r, seed), row_tokens in zip(chunk, tokens, strict=True):
                texts[r, seed] = self.tokenizer.decode(row_tokens, skip_special_tokens=True).strip()
        return [[texts[r, seed] for seed in request.seeds] for r, request in enumerate(requests)]

    @torch.inference_mode()
    def _beam_search(self, requests: Sequence[GenerationRequest], sampling: Sampling) -> list[list[str]]:
        """Beam search by transformers' own `generate`, as the reference decodes Object HalBench's answers.

        One prompt at a time: in a left-padded batch the padding would change the beams' scores. Beam search
        draws nothing at random, so every seed of a request gets the same text.
        """
        texts = []
        for request in requests:
            inputs = self.processor(
                text=[self._chat(request.question)], images=[load_image(request.image)], return_tensors="pt"
            ).to(self.device)
            output = self.model.generate(
                **inputs,
                do_sample=False,
                num_beams=sampling.num_beams,
                max_new_tokens=sampling.max_new_tokens,
                eos_token_id=sorted(self.eos_ids),
                pad_token_id=self.tokenizer.pad_token_id,
            )
            text = self.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            texts.append([text.strip()] * len(request.seeds))
        return texts

    # ---- complete (text only) ----------------------------------------------------------------------

    def _text_model(self):
        if self._text is None:
            if self.text_model_path is None:
                self._text = (self.model, self.tokenizer)
            else:
                trusted = trust_remote_code(self.text_model_path)
                tokenizer = AutoTokenizer.from_pretrained(
                    self.text_model_path, padding_side="left", trust_remote_code=trusted
                )
                model = AutoModelForCausalLM.from_pretrained(
                    self.text_model_path, dtype=self.model.dtype, use_safetensors=True, trust_remote_code=trusted
                )
                self._text = (model.to(self.device).eval(), tokenizer)
        return self._text

    def complete(self, prompts: Sequence[str], sampling: Sampling) -> list[str]:
        """Answer each prompt as a user turn (chat template when the tokenizer has one).

        The seed is a hash of the prompt, so a prompt always gets the same completion.
        """
        model, tokenizer = self._text_model()
        if tokenizer.chat_template:
            prompts = [
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
                )
                for prompt in prompts
            ]
        eos_ids = self._eos_ids(model, tokenizer)
        results = []
        for chunk in batched(prompts, self.batch_size):
            inputs = self._batch(tokenizer(chunk)["input_ids"])
            seeds = [zlib.crc32(prompt.encode()) for prompt in chunk]
            tokens = sample_rows(model, inputs, list(range(len(chunk))), seeds, sampling, eos_ids)
            results += [tokenizer.decode(row, skip_special_tokens=True).strip() for row in tokens]
        return results

    # ---- yes / no ----------------------------------------------------------------------------------

    def _yes_no_from_logits(self, logits: torch.Tensor) -> list[YesNo]:
        """Softmax over the full vocabulary; no repetition penalty (the reference applies one, we do not)."""
        probs = logits.float().softmax(-1)
        p_yes = probs[:, self.yes_ids].sum(-1).tolist()
        p_no = probs[:, self.no_ids].sum(-1).tolist()
        return [YesNo(p_yes=y, p_no=n) for y, n in zip(p_yes, p_no, strict=True)]

    @torch.inference_mode()
    def yes_no(self, queries: Sequence[PolarQuery]) -> list[YesNo]:
        """P(Yes)+P(yes) and P(No)+P(no) of the first answer token (labeling.backends.logprobs says which
        tokens); no repetition penalty.

        The prompt splits where the image's questions part: the prefix `USER: <image> Is it true that`
        (with its image tokens) runs once per image, then its KV cache is copied to every question row of
        that image and the question tails run batched (left-padded, position ids continuing after the
        prefix). The split point is the run of token ids all of the image's full prompts share, so the
        result equals a full forward even where a tokenizer merges across the boundary. Images are taken in
        chunks of about `batch_size` questions, so memory stays bounded however many images a call holds.
        """
        by_image: dict[str, list[int]] = {}
        for i, query in enumerate(queries):
            by_image.setdefault(str(query.image), []).append(i)
        items = prefetched(
            lambda group: self._image_questions(group[0], group[1], [queries[i].prompt for i in group[1]]),
            by_image.items(),
            ahead=self.batch_size,
        )
        results: list[YesNo | None] = [None] * len(queries)
        for chunk in chunk_images(items, self.batch_size):
            self._score_chunk(chunk, results)
        return results

    def _image_questions(self, image: str, indices: list[int], prompts: Sequence[str]) -> ImageQuestions:
        inputs = self._image_inputs(image)
        full = self._token_ids([*map(self._chat, prompts)], inputs)
        # The prefix runs once: every id the image's prompts share ("USER: <image> Is it true that there is a"),
        # all but the last, whose logits answer. Its image tokens come before any question's words.
        shared = min(min(common_prefix_length(full[0], ids), len(ids) - 1) for ids in full)
        return ImageQuestions(inputs, indices, full, shared)

    def _score_chunk(self, chunk: list[ImageQuestions], results: list):
        """Run the chunk's image prefixes in one forward, then its questions `batch_size` rows at a time."""
        shared = chunk[0].shared
        prefix = self._prompt_batch([item.ids[0][:shared] for item in chunk], [item.image for item in chunk])
        prefix_positions = prompt_positions(self.model, prefix)
        prefix_cache = self.model(**prefix, position_ids=prefix_positions, use_cache=True, logits_to_keep=1).cache
        starts = next_positions(prefix_positions)
        rows = []  # (image's place in the chunk, query index, question tail)
        for c, item in enumerate(chunk):
            rows += [(c, i, ids[shared:]) for i, ids in zip(item.indices, item.ids, strict=True)]
        rows.sort(key=lambda row: len(row[2]))  # tails of like length batch together: less padding to run
        # Sliding-window layers (Gemma 3) count their window in cache slots, so padding between the prefix and
        # a question longer than the window would shift it: such questions go in batches of one length, unpadded.
        window = self.sliding_window
        for batch in self._batches(
            rows, key=lambda row: len(row[2]) if window and shared + len(row[2]) > window else 0
        ):
            select = torch.tensor([c for c, _, _ in batch], device=self.device)
            cache = cache_rows(prefix_cache, select)
            tails = self._batch([tail for _, _, tail in batch])
            mask = tails["attention_mask"]
            positions = starts[select][:, None] + (mask.cumsum(-1) - 1).clamp(min=0)
            mask = torch.cat([mask.new_ones(len(batch), shared), mask], dim=-1)
            logits = self.model(
                input_ids=tails["input_ids"],
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
            for (_, i, _), verdict in zip(batch, self._yes_no_from_logits(logits), strict=True):
                results[i] = verdict

    def _batches(self, rows: list, key: Callable) -> Iterator[list]:
        """Rows `batch_size` at a time, each batch holding rows of one `key` (in order within a key)."""
        for _, group in groupby(sorted(rows, key=key), key):
            yield from batched(list(group), self.batch_size)

    @torch.inference_mode()
    def yes_no_plain(self, queries: Sequence[PolarQuery]) -> list[YesNo]:
        """The reference's way: per query, load and process the image and run the whole prompt.

        Kept as the ground truth for tests and as the benchmark's baseline.
        """
        results = []
        for query in queries:
            inputs = self.processor(
                text=[self._chat(query.prompt)], images=[load_image(query.image)], return_tensors="pt"
            ).to(self.device)
            results += self._yes_no_from_logits(self.model(**inputs, logits_to_keep=1).logits[:, -1])
        return results
