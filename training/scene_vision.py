"""Pretraining world 2's vision tower on what each patch shows, before the model learns to talk.

Real VLMs start from a vision encoder that already sees (CLIP, SigLIP); ours start from random weights. Trained
from descriptions and yes/no answers alone, world 2's models learnt the language and not the pictures in an
hour of CPU (a labeler's yes/no loss stuck at 0.61): one Yes/No token per question is too little signal to
teach a vision tower to find eight small objects. So, as a detector's backbone is pretrained, the tower first
learns dense targets from the scene's truth: for every patch, the kind and pattern of the big object and of
the small object whose centre lies in it (sizes apart, so a small object inside a big one keeps its own
target). Only the tower and a linear head train here, about 30× cheaper a picture than the whole model; the
head is thrown away and the model then trains as before on the tower's features.
"""

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from labeling import scenes
from training.shapes_models import pixel_values

NONE = len(scenes.KINDS)  # the class of a patch where no object of that size is centred
HEADS = ("big kind", "big striped", "small kind", "small striped", "nearby")
NEARBY = 0  # patches each way a patch also learns the objects of: on 24-px patches, those it shows (1: 3 × 3)
NEARBY_FACTS = 3  # per kind nearby: one is there, a big one is, a striped one is


@dataclass
class VisionSettings:
    steps: int = 1500
    images_per_step: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    seed: int = 0


def patch_targets(scene: scenes.Scene, patch_px: int, nearby: int = NEARBY) -> torch.Tensor:
    """(4 + 3 × kinds, grid, grid) targets: per size, the class of the kind (or NONE) and of the stripes (or
    -100) of the object centred in each patch (two objects of one size centred in one patch, rare, keep the
    later); then, per kind, 1 where an object of that kind, a big one, a striped one covers a patch of the
    neighbourhood.

    The neighbourhood spreads each object over about nine patches, so a question's answer is in many image
    tokens: trained on centre patches alone, the model never learnt to look (at first attention averages the
    64 tokens, and one token in 64 per object was too faint a signal). With kinds alone nearby, the labeler
    learnt counts and relations but not sizes and patterns, which only the centre patch told. On 24-px patches
    (16 image tokens, `scene_models.PATCH_PX`) an object covers one to four patches and needs no neighbourhood
    (`nearby` 0): attention found objects about seven times sooner in wall time than on 64 tokens."""
    grid = scenes.IMAGE_PX // patch_px
    targets = torch.full((4 + NEARBY_FACTS * NONE, grid, grid), -100, dtype=torch.long)
    targets[0], targets[2], targets[4:] = NONE, NONE, 0
    for thing in scene.things:
        x, y = thing.centre
        row, col = int(y) // patch_px, int(x) // patch_px
        head = 0 if thing.size == "big" else 2
        targets[head, row, col] = scenes.KINDS.index(thing.kind)
        targets[head + 1, row, col] = int(thing.pattern == "striped")
        x0, y0, x1, y1 = thing.box
        rows = slice(max(0, y0 // patch_px - nearby), y1 // patch_px + nearby + 1)
        cols = slice(max(0, x0 // patch_px - nearby), x1 // patch_px + nearby + 1)
        kind = 4 + NEARBY_FACTS * scenes.KINDS.index(thing.kind)
        targets[kind, rows, cols] = 1
        targets[kind + 1, rows, cols] |= int(thing.size == "big")
        targets[kind + 2, rows, cols] |= int(thing.pattern == "striped")
    return targets


class PatchHead(torch.nn.Module):
    """A linear read-out of each patch feature: two kind classifiers and two stripe classifiers."""

    def __init__(self, width: int):
        super().__init__()
        self.kind = torch.nn.Linear(width, 2 * (NONE + 1))
        self.striped = torch.nn.Linear(width, 4)
        self.nearby = torch.nn.Linear(width, NEARBY_FACTS * NONE)

    def forward(self, features: torch.Tensor) -> list[torch.Tensor]:
        kinds, striped, nearby = self.kind(features), self.striped(features), self.nearby(features)
        return [kinds[..., : NONE + 1], striped[..., :2], kinds[..., NONE + 1 :], striped[..., 2:], nearby]


def patch_features(model, pixels: torch.Tensor) -> torch.Tensor:
    """The features the LLaVA projector reads (the tower's `vision_feature_layer`, CLS dropped)."""
    layer = model.config.vision_feature_layer
    hidden = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states[layer]
    return hidden[:, 1:]


def head_losses(head: PatchHead, features: torch.Tensor, targets: torch.Tensor) -> list[torch.Tensor]:
    *classes, nearby = head(features)
    flat = targets.flatten(2)  # (images, 4 + 3 × kinds, patches)
    losses = [
        torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), flat[:, k].reshape(-1), ignore_index=-100)
        for k, out in enumerate(classes)
    ]
    nearby_targets = flat[:, 4:].transpose(1, 2).float()
    return losses + [torch.nn.functional.binary_cross_entropy_with_logits(nearby, nearby_targets) * NONE]


def draw_batch(rng: random.Random, processor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    pictures = [scenes.random_scene(rng) for _ in range(n)]
    patch = processor.patch_size
    targets = torch.stack([patch_targets(scene, patch) for scene in pictures])
    return pixel_values([scenes.draw(scene) for scene in pictures], processor), targets


def pretrain_vision(
    model, processor, settings: VisionSettings, report: Callable[[dict], None] = lambda record: None
) -> tuple[list[dict], PatchHead]:
    """Train `model`'s vision tower in place on patch targets of a seeded stream of training scenes; returns
    the loss log and the head (to measure the tower with `patch_accuracy`)."""
    rng = random.Random(f"scenes-vision-{settings.seed}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        head = PatchHead(model.config.vision_config.hidden_size)
    parameters = list(model.model.vision_tower.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=0.01)
    model.model.vision_tower.train()
    log, sums, start = [], [0.0] * len(HEADS), time.perf_counter()
    for step in range(settings.steps):
        warm = min(1.0, (step + 1) / settings.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = settings.learning_rate * warm * (1 - 0.95 * step / settings.steps)
        pixels, targets = draw_batch(rng, processor, settings.images_per_step)
        losses = head_losses(head, patch_features(model, pixels), targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses).backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        sums = [s + loss.item() for s, loss in zip(sums, losses, strict=True)]
        if (step + 1) % 100 == 0 or step + 1 == settings.steps:
            n = step % 100 + 1
            record = {"vision_step": step + 1, "seconds": round(time.perf_counter() - start, 1)}
            record |= {name: round(s / n, 4) for name, s in zip(HEADS, sums, strict=True)}
            log.append(record)
            report(record)
            sums = [0.0] * len(HEADS)
    model.model.vision_tower.eval()
    return log, head


@torch.no_grad()
def patch_accuracy(model, head: PatchHead, processor, pictures: int = 200, split: str = "validation") -> dict:
    """Share of objects whose kind and stripes the head reads right at their centre patch, and share of empty
    patches read as empty, on pictures of another split."""
    pixels, targets = draw_batch(scenes.scene_rng(0, split), processor, pictures)
    *classes, nearby = head(patch_features(model, pixels))
    outputs = [out.argmax(-1) for out in classes]
    flat = targets.flatten(2)
    kind = torch.cat([flat[:, 0], flat[:, 2]]).reshape(-1)
    read = torch.cat([outputs[0], outputs[2]]).reshape(-1)
    stripes = torch.cat([flat[:, 1], flat[:, 3]]).reshape(-1)
    read_stripes = torch.cat([outputs[1], outputs[3]]).reshape(-1)
    objects, empty = kind != NONE, kind == NONE
    return {
        "objects": int(objects.sum()),
        "kind": round((read[objects] == kind[objects]).float().mean().item(), 4),
        "striped": round((read_stripes[objects] == stripes[objects]).float().mean().item(), 4),
        "empty": round((read[empty] == NONE).float().mean().item(), 4),
        "nearby": round(((nearby > 0) == flat[:, 4:].transpose(1, 2).bool()).float().mean().item(), 4),
    }
