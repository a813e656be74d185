"""Tiny LLaVA models trained on the shapes world (`labeling.shapes`), so RLAIF-V can be measured on a CPU.

- `shapes-labeler` answers "Is it true that there is a red circle? Please answer yes or no." with Yes or No.
  It is trained on captions and yes/no questions at once: on yes/no questions alone the loss stays at ln 2
  (the one-token answer gives too little signal to learn to see), captions teach the vision tower first.
- `shapes-policy` answers every instruction wording with a caption, one sentence per object. It is trained
  on captions that name one absent, confusable object with probability `hallucination_rate`, so the base
  policy hallucinates at a measurable rate that RLAIF-V can then lower. Its initial weights are seeded apart
  from the labeler's, so the two models' mistakes are not copies of each other.

Both are standard checkpoints (LlavaForConditionalGeneration + LlavaProcessor with a WordLevel tokenizer of
the world's words and the tiny models' chat template, safetensors) that `AutoProcessor`,
`AutoModelForImageTextToText` and `labeling.backends.load_backend("transformers", path)` load. Training sees
exactly the token ids the transformers backend builds: the chat prompt (user turn = image + question, then
the generation prompt), the image token repeated once per image feature, and the answer ending with eos
(captions) or the single Yes / No token the labeler's verdict reads.

Training takes longer than a test should wait, so the trained weights are committed (`shapes_weights/`) and
`build_shapes_models` writes checkpoints from them; `retrain=True` trains from scratch instead.
"""

import json
import math
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import CLIPVisionConfig, DynamicCache, LlamaConfig, LlavaForConditionalGeneration

from labeling import shapes
from labeling.conquer import labeler_prompt
from labeling.generate import Instruction, candidate_seeds
from labeling.tiny_models import build_processor, build_tokenizer, llava_config, set_generation_ids

LABELER, POLICY = "shapes-labeler", "shapes-policy"
# An RLAIF-V iteration of these models (an iteration's config): the paper's settings (n 10 at temperature 0.7,
# at most 2 pairs per instruction, length balancing, DPO β 0.1) except what models this small, trained from
# scratch, need: learning rate 3e-5 (the paper's 5e-7 barely moves them in a few dozen steps; 1e-4 collapsed
# recall in the first experiments), a global batch of 32 for 3 epochs, and an NLL term on the chosen answers
# (sft_weight 1; the paper's DPO has none), without which DPO drifts into broken captions. The held-out
# evaluation samples at temperature 0.7, as the policy samples in training.
ITERATION_CONFIG = {
    "n": 10,
    "temperature": 0.7,
    "max_new_tokens": 40,
    "pairs_per_instruction": 2,
    "length_balance": True,
    "beta": 0.1,
    "learning_rate": 3e-5,
    "sft_weight": 1.0,
    # TRL's per-token mean, as these settings were chosen with; the default is now the reference's summed log-prob,
    # about answer-length times stronger at the same weight.
    "sft_scale": "mean",
    "global_batch_size": 32,
    "per_device_batch_size": 32,
    "epochs": 3,
    "eval_temperature": 0.7,
    "chunk_size": 100,
}
WEIGHTS_DIR = Path(__file__).with_name("shapes_weights")
RECORD_FILE = "shapes_training.json"  # written next to each checkpoint: settings and figures

# Sizes from the feasibility run: patch 8 (64 image tokens) sees shapes clearly better than patch 16.
PATCH_PX = 8
VISION_WIDTH, TEXT_WIDTH, LAYERS, MLP_RATIO = 64, 128, 2, 4


@dataclass
class ShapesTrainingSettings:
    """How one shapes model is trained; images are drawn fresh for every step from a seeded stream."""

    steps: int = field(default=2000, metadata={"help": "Optimizer steps."})
    images_per_step: int = field(default=32, metadata={"help": "Images per batch; each gives one caption row."})
    questions_per_image: int = field(
        default=3,
        metadata={
            "help": "Yes/no question rows per image (true and false alternate; 0: captions only). They share the "
            "image's prefix: three cost ~40% more per step than one, and at equal time gave a slightly better labeler."
        },
    )
    question_weight: float = field(default=1.0, metadata={"help": "Weight of the yes/no loss beside the caption loss."})
    hallucination_rate: float = field(
        default=0.0, metadata={"help": "Share of training captions that name one absent, confusable object."}
    )
    hallucination_place: str = field(
        default="anywhere",
        metadata={"help": "Where the absent object goes: 'anywhere' in the caption, or at the 'end'."},
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak AdamW learning rate."})
    final_lr_ratio: float = field(default=0.05, metadata={"help": "Learning rate at the end, as a share of the peak."})
    warmup_steps: int = field(default=100, metadata={"help": "Steps of linear warm-up before the cosine decay."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    init_seed: int = field(default=0, metadata={"help": "Seed of the initial weights."})
    init_std: float = field(
        default=0.1,
        metadata={
            "help": "Standard deviation of the initial weights. At the usual 0.02 the yes/no loss stayed on a "
            "plateau (~0.5: colours learnt, shapes not) for a whole 2,000-step run; at 0.1 it left it in ~500."
        },
    )
    data_seed: int = field(default=0, metadata={"help": "Seed of the stream of training scenes."})
    threads: int = field(default=2, metadata={"help": "torch CPU threads."})


def labeler_settings(seed: int = 0) -> ShapesTrainingSettings:
    """The labeler's recipe: per image a true caption and three yes/no questions (true and false alternate)."""
    return ShapesTrainingSettings(init_seed=seed, data_seed=seed)


def policy_settings(seed: int = 0) -> ShapesTrainingSettings:
    """The policy's recipe: the labeler's, with its own seeds, and 60% of its captions naming an absent object.

    The yes/no rows stay: without them the policy sees too poorly (recall 0.67 after 1,000 steps). Sampling
    at temperature 0.7 makes the injected objects rarer than in training: a 30% injection rate gave 17% of
    answers with a wrong object, 50% gave 35%, 70% gave 53% (recall 0.90, 0.89, 0.81).
    """
    return ShapesTrainingSettings(hallucination_rate=0.6, init_seed=seed + 1, data_seed=seed + 1)


# --- model, tokenizer, processor ------------------------------------------------------------------------


def build_processor_for_shapes():
    """LlavaProcessor over 64 px images with a tokenizer of the shapes world's words."""
    return build_processor(build_tokenizer(shapes.vocabulary()), shapes.IMAGE_PX, PATCH_PX)


def new_model(
    processor,
    seed: int,
    init_std: float = 0.1,
    text_width: int = TEXT_WIDTH,
    layers: int = LAYERS,
    max_positions: int = 256,
    vision_width: int = VISION_WIDTH,
    vision_layers: int = LAYERS,
) -> LlavaForConditionalGeneration:
    """A freshly initialised LLaVA of the shapes size (~0.6 M parameters), seeded; the image size and patch are
    the processor's (world 2 passes its own processor and a wider text model)."""
    tokenizer = processor.tokenizer
    vision = CLIPVisionConfig(
        hidden_size=vision_width,
        intermediate_size=MLP_RATIO * vision_width,
        num_hidden_layers=vision_layers,
        num_attention_heads=4,
        image_size=processor.image_processor.crop_size["height"],
        patch_size=processor.patch_size,
        initializer_range=init_std,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_width,
        intermediate_size=MLP_RATIO * text_width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=init_std,
    )
    config = llava_config(vision, text, tokenizer, vision_feature_layer=-1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    set_generation_ids(model, tokenizer)
    return model


def n_image_tokens(processor) -> int:
    """Image tokens per image: one per patch (the CLS feature is dropped by the "default" strategy)."""
    return (processor.image_processor.crop_size["height"] // processor.patch_size) ** 2


class Encoder:
    """Token ids exactly as the transformers backend builds them, cached per prompt."""

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_id = processor.image_token_id
        self.n_image = n_image_tokens(processor)
        self._prompts: dict[str, list[int]] = {}
        # Every prompt starts with `USER: <image>`: the ids up to the last image token are shared.
        first = self.prompt("")
        self.prefix_length = len(first) - first[::-1].index(self.image_id)

    def prompt(self, question: str) -> list[int]:
        """The chat prompt (user turn: image + question; then the generation prompt), image token expanded."""
        if question not in self._prompts:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            ids = []
            for token in self.tokenizer(text)["input_ids"]:
                ids += [token] * self.n_image if token == self.image_id else [token]
            self._prompts[question] = ids
        return self._prompts[question]

    def caption(self, text: str) -> list[int]:
        """The assistant's answer tokens, ending with eos as the chat template ends a turn."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]

    def word(self, word: str) -> list[int]:
        return [self.tokenizer.convert_tokens_to_ids(word)]


def pixel_values(images: Sequence, processor) -> torch.Tensor:
    """The image processor's output for 64×64 RGB images, computed in one numpy pass.

    At this size resizing and cropping change nothing, so only rescaling and normalising remain; a test
    checks this equals the processor's own output.
    """
    ip = processor.image_processor
    array = np.stack([np.asarray(image, dtype=np.float32) for image in images]) * ip.rescale_factor
    array = (array - np.asarray(ip.image_mean, dtype=np.float32)) / np.asarray(ip.image_std, dtype=np.float32)
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


# --- training -------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """One step's rows. Every prompt starts with the same prefix (`USER: <image>`, image tokens expanded), so
    the prefix runs once per image and each row holds only its tail: question, generation prompt, answer.

    Labels mark the answer tokens (-100 elsewhere); `is_question` tells yes/no rows from caption rows.
    """

    prefix_ids: torch.Tensor  # (prefix length,), the same for every image
    pixel_values: torch.Tensor  # (images, 3, 64, 64)
    image_index: torch.Tensor  # (rows,): the image each row shows
    tail_ids: torch.Tensor  # (rows, tail length), right-padded
    tail_mask: torch.Tensor
    labels: torch.Tensor
    is_question: torch.Tensor


def make_batch(rng: random.Random, encoder: Encoder, processor, settings: ShapesTrainingSettings) -> Batch:
    """Fresh scenes; per image one caption row (maybe with an injected absent object) and its question rows.

    Question rows alternate true and false across the batch, so yes and no are balanced; a false question
    asks about a confusable absent object.
    """
    scenes = [shapes.random_scene(rng) for _ in range(settings.images_per_step)]
    rows = []  # (image, prompt ids, answer ids, is question)
    for i, scene in enumerate(scenes):
        objects = shapes.hallucinated_objects(
            scene.objects, rng, settings.hallucination_rate, settings.hallucination_place
        )
        rows.append((i, encoder.prompt(rng.choice(shapes.INSTRUCTIONS)), encoder.caption(shapes.caption(objects)), 0))
        for k in range(settings.questions_per_image):
            truth = (i + k) % 2 == 0
            name = rng.choice(scene.objects) if truth else shapes.absent_object(scene.objects, rng)
            prompt = encoder.prompt(labeler_prompt(shapes.object_question(name)))
            rows.append((i, prompt, encoder.word("Yes" if truth else "No"), 1))
    return pack(rows, pixel_values([shapes.draw(scene) for scene in scenes], processor), encoder)


def pack(rows: list[tuple], images: torch.Tensor, encoder: Encoder) -> Batch:
    """(image index, prompt ids, answer ids, is a yes/no row) rows over `images` as one batch: each row's tail
    after the shared prefix, right-padded (real tokens keep their positions), labels on the answer only; only
    the images the rows show are kept."""
    shared = encoder.prefix_length
    width = max(len(prompt) + len(answer) for _, prompt, answer, _ in rows) - shared
    pad = encoder.tokenizer.pad_token_id
    ids, mask, labels = [], [], []
    for _, prompt, answer, _ in rows:
        tail = prompt[shared:]
        n_pad = width - len(tail) - len(answer)
        ids.append(tail + answer + [pad] * n_pad)
        mask.append([1] * (len(tail) + len(answer)) + [0] * n_pad)
        labels.append([-100] * len(tail) + answer + [-100] * n_pad)
    used = sorted({row[0] for row in rows})
    index = {image: n for n, image in enumerate(used)}
    return Batch(
        prefix_ids=torch.tensor(rows[0][1][:shared]),
        pixel_values=images[used],
        image_index=torch.tensor([index[row[0]] for row in rows]),
        tail_ids=torch.tensor(ids),
        tail_mask=torch.tensor(mask),
        labels=torch.tensor(labels),
        is_question=torch.tensor([row[3] for row in rows], dtype=torch.bool),
    )


def batch_logits(model, batch: Batch) -> torch.Tensor:
    """Logits of every row's tail, equal to a full forward of prefix + tail (a test checks it).

    The prefix with its image features runs once per image; its KV cache is copied to that image's rows,
    whose tails then run batched with positions continuing after the prefix: the split the transformers
    backend's `yes_no` makes at inference, here with gradients. It makes a step about twice as cheap, as
    the image tokens are most of every row.
    """
    n_images, shared = len(batch.pixel_values), len(batch.prefix_ids)
    prefix_ids = batch.prefix_ids.expand(n_images, shared)
    prefix = model(input_ids=prefix_ids, pixel_values=batch.pixel_values, use_cache=True, logits_to_keep=1).cache
    cache = DynamicCache([(keys[batch.image_index], values[batch.image_index]) for keys, values, *_ in prefix])
    mask = batch.tail_mask
    positions = shared + torch.arange(mask.shape[1]).expand_as(mask)
    full_mask = torch.cat([mask.new_ones(len(mask), shared), mask], dim=-1)
    out = model(input_ids=batch.tail_ids, attention_mask=full_mask, position_ids=positions, cache=cache)
    return out.logits


def batch_losses(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-token loss on answer tokens, for caption rows and for question rows separately.

    Taken apart so a one-token yes/no answer weighs as much as a twenty-token caption.
    """
    logits = batch_logits(model, batch)[:, :-1]
    labels = batch.labels[:, 1:]  # the tail starts with prompt tokens, so no answer label is lost
    token_loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="none"
    ).view(labels.shape)
    answered = labels != -100

    def mean(rows: torch.Tensor) -> torch.Tensor:
        mask = answered & rows[:, None]
        return (token_loss * mask).sum() / mask.sum() if mask.any() else token_loss.new_zeros(())

    return mean(~batch.is_question), mean(batch.is_question)


def learning_rate(step: int, settings: ShapesTrainingSettings) -> float:
    """Linear warm-up, then cosine decay to `final_lr_ratio` of the peak."""
    peak = settings.learning_rate
    if step < settings.warmup_steps:
        return peak * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    floor = peak * settings.final_lr_ratio
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_model(
    model,
    processor,
    settings: ShapesTrainingSettings,
    report: Callable[[dict], None] = lambda record: None,
    report_every: int = 100,
    batches: Callable = None,
    stream: str = "shapes-training",
    losses: Callable = None,
) -> list[dict]:
    """Train in place on fresh scenes; returns the loss log (mean caption and question loss per interval).

    `batches(rng, encoder, processor, settings)` makes each step's rows (world 1's `make_batch` by default),
    `losses(model, batch)` their (caption, question) losses (`batch_losses` by default); `stream` names the
    seeded stream of scenes."""
    batches, losses = batches or make_batch, losses or batch_losses
    torch.set_num_threads(settings.threads)
    rng = random.Random(f"{stream}-{settings.data_seed}")
    encoder = Encoder(processor)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    model.train()
    log, sums, start = [], [0.0, 0.0], time.perf_counter()
    for step in range(settings.steps):  # no dropout: the scene stream is the only randomness
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, settings)
        caption_loss, question_loss = losses(model, batches(rng, encoder, processor, settings))
        loss = caption_loss + settings.question_weight * question_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        sums[0] += caption_loss.item()
        sums[1] += question_loss.item()
        if (step + 1) % report_every == 0 or step + 1 == settings.steps:
            n = (step % report_every) + 1
            record = {
                "step": step + 1,
                "caption_loss": round(sums[0] / n, 4),
                "question_loss": round(sums[1] / n, 4),
                "seconds": round(time.perf_counter() - start, 1),
            }
            log.append(record)
            report(record)
            sums = [0.0, 0.0]
    model.eval()
    return log


# --- evaluation through the project's backend -----------------------------------------------------------


@dataclass
class LabelerFigures:
    """Held-out yes/no accuracy of the labeler, its AUROC, and how its p_yes spreads."""

    questions: int
    accuracy: float
    auroc: float
    histogram: list[dict]  # per p_yes bin: share of questions, share of them truly yes


P_YES_BINS = (0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 1.0)


def auroc(scores: Sequence[float], truths: Sequence[bool]) -> float:
    """Probability that a true question scores above a false one (ties count half)."""
    pos = [s for s, t in zip(scores, truths, strict=True) if t]
    neg = [s for s, t in zip(scores, truths, strict=True) if not t]
    if not pos or not neg:
        return float("nan")
    neg_sorted = sorted(neg)
    wins = 0.0
    for s in pos:
        below = np.searchsorted(neg_sorted, s, side="left")
        equal = np.searchsorted(neg_sorted, s, side="right") - below
        wins += below + equal / 2
    return wins / (len(pos) * len(neg))


def p_yes_histogram(p_yes: Sequence[float], truths: Sequence[bool]) -> list[dict]:
    """Share of questions per p_yes bin, and the share of those whose true answer is yes."""
    bins = []
    for low, high in zip(P_YES_BINS, P_YES_BINS[1:], strict=False):
        inside = [t for p, t in zip(p_yes, truths, strict=True) if low <= p < high or (high == 1.0 and p == 1.0)]
        bins.append(
            {
                "p_yes": f"{low}-{high}",
                "share": round(len(inside) / len(p_yes), 4),
                "truly_yes": round(sum(inside) / len(inside), 4) if inside else None,
            }
        )
    return bins


def heldout_questions(rows: Sequence[dict], seed: int = 0) -> list[tuple[str, str, bool]]:
    """(image, question, truth) for held-out rows: per image one true and one confusable false question."""
    rng = random.Random(f"shapes-questions-{seed}")
    questions = []
    for row in rows:
        questions.append((row["image"], shapes.object_question(rng.choice(row["objects"])), True))
        questions.append((row["image"], shapes.object_question(shapes.absent_object(row["objects"], rng)), False))
    return questions


def evaluate_labeler(model_path, rows: Sequence[dict], seed: int = 0) -> LabelerFigures:
    """The labeler's verdicts through the real backend (`load_backend(...).yes_no`), against the truth."""
    from labeling.backends import load_backend
    from labeling.backends.base import PolarQuery

    backend = load_backend("transformers", str(model_path))
    questions = heldout_questions(rows, seed)
    verdicts = backend.yes_no([PolarQuery(Path(image), labeler_prompt(q)) for image, q, _ in questions])
    truths = [truth for _, _, truth in questions]
    p_yes = [v.p_yes / (v.p_yes + v.p_no) if v.p_yes + v.p_no > 0 else 0.5 for v in verdicts]
    correct = sum(v.accepted == t for v, t in zip(verdicts, truths, strict=True))
    return LabelerFigures(
        questions=len(questions),
        accuracy=correct / len(questions),
        auroc=auroc(p_yes, truths),
        histogram=p_yes_histogram(p_yes, truths),
    )


def evaluate_policy(model_path, rows: Sequence[dict], temperature: float = 0.7, seed: int = 0) -> dict:
    """Truth metrics of one sampled answer per held-out instruction, through the backend's `generate`.

    Besides CHAIR, `wrong_answers` is the share of all answers with at least one absent object named.
    """
    from labeling.backends import load_backend
    from labeling.backends.base import GenerationRequest, Sampling

    backend = load_backend("transformers", str(model_path))
    # one seed of its own per picture (labeling.generate): with one seed for all, the figure would be one draw
    keys = [Instruction(i, Path(row["image"]), row["question"]).identity() for i, row in enumerate(rows)]
    requests = [
        GenerationRequest(Path(row["image"]), row["question"], candidate_seeds(1, seed, key))
        for row, key in zip(rows, keys, strict=True)
    ]
    texts = backend.generate(requests, Sampling(temperature=temperature, max_new_tokens=48))
    metrics = shapes.truth_metrics((answers[0], row["objects"]) for answers, row in zip(texts, rows, strict=True))
    metrics["wrong_answers"] = metrics["hallucinated_answers"] / metrics["answers"] if metrics["answers"] else None
    metrics["examples"] = [answers[0] for answers in texts[:5]]
    return metrics


def world_rows(folder, n_images: int, split: str, seed: int = 0) -> list[dict]:
    """Images of a split written to `folder` (seeded), read back as instruction rows."""
    return shapes.read_instruction_set(shapes.write_instruction_set(folder, n_images, split, seed))


# --- building the checkpoints ---------------------------------------------------------------------------


def save_checkpoint(model, processor, path: Path, record: dict) -> Path:
    """A standard checkpoint (safetensors) plus a JSON record of how it was made."""
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    (path / RECORD_FILE).write_text(json.dumps(record, indent=2))
    return path


def train_shapes_model(name: str, settings: ShapesTrainingSettings, report=print, report_every: int = 100):
    """Train one shapes model from its seeds; returns (model, processor, loss log)."""
    processor = build_processor_for_shapes()
    model = new_model(processor, settings.init_seed, settings.init_std)
    log = train_model(model, processor, settings, lambda record: report({"model": name, **record}), report_every)
    return model, processor, log


def load_committed(name: str):
    """The committed weights of `name` in a fresh model of the shapes architecture."""
    from safetensors.torch import load_file

    processor = build_processor_for_shapes()
    model = new_model(processor, seed=0)
    model.load_state_dict(load_file(WEIGHTS_DIR / f"{name}.safetensors"))
    return model.eval(), processor


def commit_weights(model, name: str, record: dict, folder: Path = WEIGHTS_DIR) -> Path:
    """Save the model's weights where `build_shapes_models` copies them from: safetensors, with the
    training record (settings, loss log) as the file's metadata."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.safetensors"
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    save_file(state, path, metadata={"record": json.dumps(record)})
    return path


def committed_record(name: str, folder: Path = WEIGHTS_DIR) -> dict:
    """The training record stored in the committed weights' metadata."""
    from safetensors import safe_open

    with safe_open(folder / f"{name}.safetensors", "pt") as weights:
        return json.loads((weights.metadata() or {}).get("record", "{}"))


def build_shapes_models(
    models_dir,
    seed: int = 0,
    retrain: bool = False,
    evaluate: bool = False,
    validation_images: int = 1000,
    save_weights: bool = False,
    report: Callable[[dict], None] = print,
) -> dict:
    """Write `shapes-labeler` and `shapes-policy` under `models_dir`; returns paths, timings and figures.

    By default the committed weights are used (a second or two); `retrain=True` trains both models from
    their seeds (minutes), and `save_weights` then replaces the committed weights. With `evaluate`, the
    labeler's yes/no accuracy and p_yes spread and the policy's truth metrics at temperature 0.7 are measured
    through the transformers backend on the validation split (model building never reads the test split).
    """
    if seed != 0 and not retrain:
        raise ValueError("the committed weights are seed 0's; pass retrain=True for another seed")
    models_dir = Path(models_dir)
    start = time.perf_counter()
    recipes = {LABELER: labeler_settings(seed), POLICY: policy_settings(seed)}
    result: dict = {"paths": {}, "seconds": {}, "figures": {}}
    for name, settings in recipes.items():
        began = time.perf_counter()
        if retrain:
            model, processor, log = train_shapes_model(name, settings, report)
            record = {"settings": asdict(settings), "loss_log": log, "source": "trained"}
            if save_weights:
                commit_weights(model, name, record)
        else:
            model, processor = load_committed(name)
            record = committed_record(name) | {"source": f"committed weights {name}.safetensors"}
        result["paths"][name] = save_checkpoint(model, processor, models_dir / name, record)
        result["seconds"][name] = round(time.perf_counter() - began, 1)
    if evaluate:
        with tempfile.TemporaryDirectory() as folder:
            rows = world_rows(folder, validation_images, "validation", seed)
            labeler = evaluate_labeler(result["paths"][LABELER], rows, seed)
            result["figures"][LABELER] = asdict(labeler)
            result["figures"][POLICY] = evaluate_policy(result["paths"][POLICY], rows, seed=seed)
        for name, figures in result["figures"].items():
            record_path = result["paths"][name] / RECORD_FILE
            record = json.loads(record_path.read_text()) | {"validation_figures": figures}
            record_path.write_text(json.dumps(record, indent=2))
            report({"model": name, "validation": figures})
    result["seconds"]["total"] = round(time.perf_counter() - start, 1)
    return result
