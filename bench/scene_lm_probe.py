"""Can world 2's language model learn its labeler's questions at all? The truth in place of the vision tower.

Usage:
    .venv/bin/python bench/scene_lm_probe.py [--features truth|slots] [--steps 600] [--existence-steps 600]
        [--describe] [--learning-rate 1e-3] [--init-std 0.1] [--scale 5] [--patch-px 12] [--text-width 128]
        [--layers 3] [--phases size:400,pattern:400] [--pictures 150] [--threads 2]

World 2's labeler learnt which objects a picture holds and how many, never their sizes and patterns, whatever
the vision tower was taught. This asks the other half: each image token is given the scene's truth instead of
the tower's features, and the model (`training.scene_models`, the labeler's architecture and its training rows)
trains on it as on a tower's. `truth`: every image token holds, per kind, whether it is there, whether twice
or more, and for a kind seen once whether it is big and striped (±1); `slots`: token k holds kind k alone (its
identity, count, size, pattern, the kinds it is left of and above). If the model cannot learn the questions
from these, no tower will teach it. Prints the loss every 100 steps, then the accuracy on claim questions of
validation pictures by kind, beside what answering "yes" to all of them scores.
"""

import argparse
import json
import random
import sys
from pathlib import Path

import torch

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the checkout's packages, not bench/ alone

from labeling import scene_text, scenes  # noqa: E402
from labeling.conquer import labeler_prompt  # noqa: E402
from training import scene_models  # noqa: E402
from training.shapes_models import Encoder, batch_logits, pack, train_model  # noqa: E402

KINDS = len(scenes.KINDS)


def truth_features(scene: scenes.Scene, width: int, tokens: int, layout: str) -> torch.Tensor:
    """(tokens, width) features stating the scene's facts; see the module's docstring for the two layouts."""
    features = torch.zeros(tokens, width)
    counts = scene.counts
    for k, kind in enumerate(scenes.KINDS):
        single = scene.single(kind)
        if layout == "truth":
            features[:, 4 * k] = float(counts[kind] >= 1)
            features[:, 4 * k + 1] = float(counts[kind] >= 2)
            if single is not None:
                features[:, 4 * k + 2] = 1.0 if single.size == "big" else -1.0
                features[:, 4 * k + 3] = 1.0 if single.pattern == "striped" else -1.0
            continue
        slot = features[k]
        slot[k], slot[KINDS + min(counts[kind], 3)] = 1.0, 1.0
        if single is not None:
            slot[KINDS + 4], slot[KINDS + 5] = float(single.size == "big"), float(single.pattern == "striped")
        for a in scene.of_kind(kind):
            for b in scene.things:
                other = scenes.KINDS.index(b.kind)
                slot[KINDS + 6 + other] = max(slot[KINDS + 6 + other], float(scenes.left_of(a, b)))
                slot[2 * KINDS + 6 + other] = max(slot[2 * KINDS + 6 + other], float(scenes.above(a, b)))
    return features


class TruthImages:
    """Stands in for the tower and projector: pictures are numbered tensors, and each number's scene gives the
    features the projector reads."""

    def __init__(self, model, layout: str, scale: float):
        self.model, self.layout, self.scale, self.scenes = model, layout, scale, []
        width = model.config.vision_config.hidden_size
        if layout == "truth" and 4 * KINDS > width or layout == "slots" and 3 * KINDS + 6 > width:
            raise SystemExit(f"{layout}: the tower's width {width} cannot hold the facts")

    def tensors(self, pictures: list[scenes.Scene], side: int) -> torch.Tensor:
        """One tensor per picture, its first value the picture's number."""
        first = len(self.scenes)
        self.scenes += pictures
        numbered = torch.zeros(len(pictures), 3, side, side)
        numbered[:, 0, 0, 0] = torch.arange(first, first + len(pictures), dtype=torch.float)
        return numbered

    def __call__(self, pixel_values, **kwargs):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        config = self.model.config.vision_config
        tokens = (config.image_size // config.patch_size) ** 2
        features = torch.stack(
            [
                truth_features(self.scenes[int(p[0, 0, 0])], config.hidden_size, tokens, self.layout)
                for p in pixel_values
            ]
        )
        projected = self.model.model.multi_modal_projector(self.scale * features)
        return BaseModelOutputWithPooling(pooler_output=list(projected))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", choices=("truth", "slots"), default="truth")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--existence-steps", type=int, default=600, help="first steps of existence questions alone")
    parser.add_argument("--describe", action="store_true", help="also train on descriptions (as the labeler does)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--init-std", type=float, default=0.1)
    parser.add_argument("--scale", type=float, default=5.0, help="multiplies the features")
    parser.add_argument("--pictures", type=int, default=150, help="validation pictures (four claims each)")
    parser.add_argument("--patch-px", type=int, default=scene_models.PATCH_PX, help="larger patches: fewer tokens")
    parser.add_argument(
        "--phases",
        default="",
        help="after the existence steps, phases of one kind of claim, e.g. size:400,pattern:400 (a curriculum, "
        "SceneTrainingSettings.phases); the steps left train on every kind",
    )
    parser.add_argument("--text-width", type=int, default=scene_models.TEXT_WIDTH)
    parser.add_argument("--layers", type=int, default=scene_models.LAYERS, help="the language model's layers")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    scene_models.PATCH_PX = args.patch_px  # the processor's patch, and so the number of image tokens
    scene_models.TEXT_WIDTH, scene_models.LAYERS = args.text_width, args.layers
    settings = scene_models.SceneTrainingSettings(
        **scene_models.SIZE
        | {
            "steps": args.steps,
            "existence_first_steps": args.existence_steps,
            "describe": args.describe,
            "questions_per_image": 3 if args.describe else 6,
            "learning_rate": args.learning_rate,
            "init_std": args.init_std,
            "threads": args.threads,
            "phases": args.phases,
        }
    )
    processor = scene_models.build_processor_for_scenes()
    model = scene_models.new_scene_model(processor, settings.init_seed, settings.init_std)
    images = TruthImages(model, args.features, args.scale)
    model.model.get_image_features = images  # the tower and projector's place in LlavaModel.forward
    side = scenes.IMAGE_PX
    step = iter(range(settings.steps))

    def batches(rng, encoder, processor, settings):
        kinds = scene_models.phase_at(settings, next(step))
        pictures = [scenes.random_scene(rng) for _ in range(settings.images_per_step)]
        rows = {"answers": [], "questions": []}
        for i, scene in enumerate(pictures):
            for prompt, answer, is_question in scene_models.picture_rows(scene, rng, settings, i, kinds):
                answer_ids = encoder.word(answer) if is_question else encoder.caption(answer)
                rows["questions" if is_question else "answers"].append(
                    (i, encoder.prompt(prompt), answer_ids, is_question)
                )
        numbered = images.tensors(pictures, side)
        return [pack(group, numbered, encoder) for group in rows.values() if group]

    train_model(
        model,
        processor,
        settings,
        lambda record: print(json.dumps(record), flush=True),
        batches=batches,
        stream="scenes-training",
        losses=scene_models.group_losses,
    )
    print(json.dumps({"validation claims": claim_accuracy(model, processor, images, args.pictures)}), flush=True)


@torch.no_grad()
def claim_accuracy(model, processor, images: TruthImages, pictures: int) -> dict:
    """Per kind of fact, (questions, accuracy, accuracy of answering yes to all) on validation pictures: two true
    and two false claims each, asked as the pipeline asks them."""
    encoder, stream, rng = Encoder(processor), scenes.scene_rng(0, "validation"), random.Random("lm-probe")
    drawn = [scenes.random_scene(stream) for _ in range(pictures)]
    numbered = images.tensors(drawn, scenes.IMAGE_PX)
    rows, asked = [], []
    for i, scene in enumerate(drawn):
        for truth in (True, True, False, False):
            fact = rng.choice(scene_text.scene_facts(scene)) if truth else scene_models.false_fact(scene, rng)
            question = scene_models.claim_question(fact, rng.choice(scene_text.STYLES))
            rows.append((i, encoder.prompt(labeler_prompt(question)), encoder.word("Yes" if truth else "No"), True))
            asked.append(("relation" if fact.kind in scenes.RELATIONS else fact.kind, truth))
    yes, no = encoder.word("Yes")[0], encoder.word("No")[0]
    right: dict[str, list] = {}
    for start in range(0, len(rows), 100):
        chunk = rows[start : start + 100]
        logits = batch_logits(model, pack(chunk, numbered, encoder))
        for j, (_, prompt, _, _) in enumerate(chunk):
            last = logits[j, len(prompt) - encoder.prefix_length - 1]
            kind, truth = asked[start + j]
            right.setdefault(kind, []).append(((last[yes] > last[no]).item() == truth, truth))
    return {
        kind: (len(v), round(sum(r for r, _ in v) / len(v), 3), round(sum(t for _, t in v) / len(v), 3))
        for kind, v in right.items()
    }


if __name__ == "__main__":
    main()
