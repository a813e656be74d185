"""Self-reward: a DPO-aligned policy ranks answers by its own implicit reward (RLAIF-V, later paper version).

DPO trains π_θ so that β·log(π_θ(y|x)/π_ref(y|x)) acts as a reward. The paper normalises it by length,
r(y) = (β/T)·Σ_t log(π_θ(y_t|x, y<t) / π_ref(y_t|x, y<t)), T the answer's token count, so long answers are not
favoured for their length alone, and uses it to pick the best of N sampled answers at inference. The sums
run over exactly the tokens DPO trained on: the prompt and answer are rendered with TRL's own chat-template
helpers (as `DataCollatorForVisionPreference` renders a training row), image first in the user turn.

Ranking does not depend on β (any β > 0 orders answers the same); β only scales the reported values.
"""

from dataclasses import dataclass

import torch
from PIL import Image

from labeling.batching import batched


@dataclass
class RewardModels:
    """The aligned policy, the reference it was trained from, and their (shared) processor."""

    policy: torch.nn.Module
    reference: torch.nn.Module
    processor: object

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device


def load_models(policy, reference, device: str = "cpu", dtype=None) -> RewardModels:
    from transformers import AutoModelForImageTextToText

    from labeling.processors import load_processor
    from labeling.remote_code import trust_remote_code

    def load(path):
        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code(path)
        )  # safetensors: no pickle
        return model.to(device).eval()

    return RewardModels(load(policy), load(reference), load_processor(policy))


def _texts(processor, question: str, answer: str, image) -> tuple[str, str]:
    """(prompt, completion) text as TRL renders a vision row; the completion ends with the end-of-turn."""
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    prompt = prepare_multimodal_messages([{"role": "user", "content": question}], images=[image])
    completion = prepare_multimodal_messages([{"role": "assistant", "content": answer}])
    rendered = apply_chat_template({"prompt": prompt, "completion": completion}, processor)
    return rendered["prompt"], rendered["completion"]


@torch.inference_mode()
def answer_logps(model, processor, image, question: str, answers: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probabilities of each answer given the image and question, and each answer's token count."""
    texts = [_texts(processor, question, answer, image) for answer in answers]
    device = next(model.parameters()).device
    prompts = processor(
        images=[[image]] * len(answers),
        text=[prompt for prompt, _ in texts],
        padding=True,
        padding_side="left",
        add_special_tokens=False,
        return_tensors="pt",
    ).to(device)
    completions = processor(
        text=[completion for _, completion in texts],
        padding=True,
        padding_side="right",
        add_special_tokens=False,
        return_tensors="pt",
    ).to(device)
    input_ids = torch.cat([prompts["input_ids"], completions["input_ids"]], dim=1)
    attention_mask = torch.cat([prompts["attention_mask"], completions["attention_mask"]], dim=1)
    scored = torch.cat([torch.zeros_like(prompts["attention_mask"]), completions["attention_mask"]], dim=1)[:, 1:]
    images = {k: v for k, v in prompts.items() if k not in ("input_ids", "attention_mask")}
    logits = model(input_ids=input_ids, attention_mask=attention_mask, **images).logits[:, :-1]
    token_logps = logits.float().log_softmax(-1).gather(-1, input_ids[:, 1:, None])[..., 0]
    return (token_logps * scored).sum(-1).cpu(), scored.sum(-1).cpu()


def implicit_rewards(
    models: RewardModels, image, question: str, answers: list[str], beta: float = 0.1, batch_size: int = 8
) -> list[float]:
    """(β/T)·Σ log(π_θ/π_ref) for each answer, `batch_size` answers per forward."""
    if isinstance(image, str | bytes) or hasattr(image, "__fspath__"):
        with Image.open(image) as opened:
            image = opened.convert("RGB")
    rewards = []
    for batch in batched(answers, batch_size):
        policy, lengths = answer_logps(models.policy, models.processor, image, question, batch)
        reference, _ = answer_logps(models.reference, models.processor, image, question, batch)
        rewards += (beta * (policy - reference) / lengths.clamp(min=1)).tolist()
    return rewards


def best_of_n(models: RewardModels, image, question: str, answers: list[str], beta: float = 0.1) -> dict:
    """The answer with the highest self-reward, with every answer's reward, best first."""
    rewards = implicit_rewards(models, image, question, answers, beta)
    ranked = sorted(range(len(answers)), key=lambda i: -rewards[i])
    return {
        "best": answers[ranked[0]],
        "ranking": [{"index": i, "reward": rewards[i], "answer": answers[i]} for i in ranked],
    }


@torch.inference_mode()
def sample_answers(models: RewardModels, image, question: str, n: int, temperature=0.7, max_new_tokens=512, seed=0):
    """n answers sampled from the policy (HF generate; seeded so a call is repeatable)."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    prompt = models.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = models.processor(images=[image], text=[prompt], return_tensors="pt").to(models.device)
    torch.manual_seed(seed)
    output = models.policy.generate(
        **inputs,
        do_sample=temperature > 0,
        temperature=temperature if temperature > 0 else None,
        max_new_tokens=max_new_tokens,
        num_return_sequences=n,
    )
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in models.processor.batch_decode(new_tokens, skip_special_tokens=True)]


def best_of_n_sampled(
    models: RewardModels, image_path, question: str, n=8, beta=0.1, candidates=None, temperature=0.7, max_new_tokens=512
) -> dict:
    """Best-of-N at inference: sample n answers (or take `candidates`) and rank them by self-reward."""
    with Image.open(image_path) as opened:
        image = opened.convert("RGB")
    answers = candidates or sample_answers(models, image, question, n, temperature, max_new_tokens)
    return best_of_n(models, image, question, answers, beta)


@dataclass(frozen=True)
class Rewarded:
    """An answer with its self-reward, as the self-reward labeling strategy pairs them."""

    id: int
    instruction_id: int
    text: str
    reward: float


def reward_pairs(answers: list[Rewarded], k: int = 2) -> list[tuple[Rewarded, Rewarded, int]]:
    """(chosen, rejected, rank gap): per instruction the best answer against the worst, the second best against
    the second worst, ..., at most k; equal rewards or identical texts make no pair."""
    by_instruction: dict[int, list[Rewarded]] = {}
    for answer in answers:
        by_instruction.setdefault(answer.instruction_id, []).append(answer)
    pairs = []
    for group in by_instruction.values():
        ranked = sorted(group, key=lambda a: (-a.reward, a.id))
        for i in range(min(k, len(ranked) // 2)):
            best, worst = ranked[i], ranked[-1 - i]
            if best.reward > worst.reward and best.text != worst.text:
                pairs.append((best, worst, len(ranked) - 1 - 2 * i))
    return pairs
