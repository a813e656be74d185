"""Tiny LLaVA models of shapes world 2 (`labeling.scenes`, `labeling.scene_text`), trained on a CPU.

Three models, each seeded apart, each a standard checkpoint the transformers backend loads (as world 1's):
- `scenes-labeler` judges claims ("Is it true that the red circle is big? Please answer yes or no.") and whole
  answers ("Is it true that <description>?"), so the self-rewarding arm gets a labeler trained for its question;
  it learns from true descriptions and from yes/no rows (half true, half false: a flipped attribute, swapped
  objects, a wrong count, an absent kind — often a habit companion).
- `scenes-policy` describes pictures in the plain style with the errors of `scene_text.with_errors` (habits
  above all), and answers the AMBER-style probes ("Is there a red circle in the image?").
- `scenes-chatty` is the second generator: true descriptions in the chatty style, the same probes.

All three start from one vision tower pretrained on what each patch shows (`training.scene_vision`, as LLaVA
models share a pretrained CLIP), frozen while they train. Training reuses world 1's machinery
(`training.shapes_models`: the encoder, the shared-prefix batch, the loss, the schedule); only the rows differ.
"""

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from labeling import scene_text, scenes
from labeling.conquer import labeler_prompt
from labeling.divide import QuestionAnswer, divide_by_rules
from labeling.tiny_models import build_processor, build_tokenizer
from labeling.whole_response import whole_response_question
from training.scene_vision import VisionSettings, patch_accuracy, pretrain_vision
from training.shapes_models import (
    Batch,
    Encoder,
    ShapesTrainingSettings,
    batch_losses,
    commit_weights,
    committed_record,
    new_model,
    pack,
    pixel_values,
    save_checkpoint,
    train_model,
)

LABELER, POLICY, CHATTY = "scenes-labeler", "scenes-policy", "scenes-chatty"
LONG_LABELER = "scenes-labeler-long"  # the labeler's recipe with a longer last phase: see long_labeler_settings
PATCH_PX = 24  # 96 px pictures in 4 × 4 patches: 16 image tokens (on 64, attention learnt to look far slower)
TEXT_WIDTH, LAYERS = 128, 3
VISION_WIDTH, VISION_LAYERS = 96, 3  # eight small objects with sizes, stripes and places: more than world 1's 64 × 2
MAX_POSITIONS = 512
VISION_STEPS = 3000  # the tower's pretraining: 81 % of objects' kinds read right at their centre patch
WEIGHTS_DIR = Path(__file__).with_name(
    "scene_weights"
)  # the prompt, 16 image tokens and a description of up to ~220 tokens


CLAIM_KINDS = ("count", "size", "pattern", "relation")


@dataclass
class SceneTrainingSettings(ShapesTrainingSettings):
    style: str = field(default="plain", metadata={"help": "The descriptions' writing style."})
    error_scale: float = field(
        default=0.0, metadata={"help": "Multiplies scene_text.ERROR_RATES in the descriptions (0: always true)."}
    )
    whole_answer_questions: int = field(
        default=0, metadata={"help": "Whole-answer yes/no rows per batch (for the self-rewarding labeler)."}
    )
    describe: bool = field(
        default=True,
        metadata={"help": "Each picture also gives a description row (False: yes/no rows only, ~3× cheaper a step)."},
    )
    existence_first_steps: int = field(
        default=0,
        metadata={
            "help": "Steps at the start whose yes/no rows are all existence probes (no whole answers): the model "
            "learns to look for an object before the harder questions (claims 0.63 on validation against 0.57)."
        },
    )
    phases: str = field(
        default="",
        metadata={
            "help": "After the existence steps, phases of claims of one kind, e.g. size:500,pattern:500 (kinds: "
            f"{', '.join(CLAIM_KINDS)}): half of a phase's yes/no rows ask its kind, half the earlier phases' "
            "(no whole answers); the steps left train on every kind. Mixed from the start, a model of this size "
            "learns neither sizes nor patterns even from the truth itself (bench/scene_lm_probe.py)."
        },
    )


# Sixteen pictures a step (each with its description and three yes/no rows): a step takes ~0.4 s on two cores.
SIZE = {"images_per_step": 16, "warmup_steps": 100, "existence_first_steps": 500}


def labeler_settings(seed: int = 0, final_steps: int = 1000) -> SceneTrainingSettings:
    """A curriculum of yes/no rows (existence, then counts, sizes, patterns, relations, each revisiting the
    earlier ones; then every kind with whole answers, `final_steps` of them): mixed from the start, sizes and
    patterns stayed at chance; with it, sizes 0.84 on validation."""
    return SceneTrainingSettings(
        **SIZE
        | {
            "steps": 600 + 3400 + final_steps,  # existence, the phases, the last phase
            "init_seed": seed,
            "data_seed": seed,
            "whole_answer_questions": 8,
            "describe": False,
            "questions_per_image": 6,
            "existence_first_steps": 600,
            "phases": "count:400,size:800,pattern:1400,relation:800",
        }
    )


def long_labeler_settings(seed: int = 0) -> SceneTrainingSettings:
    """The labeler's recipe with 3,000 steps of the last, mixed phase. The committed labeler judges whole
    answers worse than claims (0.59 against 0.70 on validation), which handicaps the self-rewarding arm; this one
    judges them better (0.82 against 0.68), though much of it from the text (0.77 beside a blank picture) and
    with sizes lost, so ablation (a) is run with both."""
    return labeler_settings(seed, final_steps=3000)


def policy_settings(seed: int = 0) -> SceneTrainingSettings:
    return SceneTrainingSettings(steps=1500, init_seed=seed + 1, data_seed=seed + 1, error_scale=1.0, **SIZE)


def chatty_settings(seed: int = 0) -> SceneTrainingSettings:
    return SceneTrainingSettings(steps=1500, init_seed=seed + 2, data_seed=seed + 2, style="chatty", **SIZE)


def build_processor_for_scenes():
    return build_processor(build_tokenizer(scene_text.vocabulary()), scenes.IMAGE_PX, PATCH_PX)


def new_scene_model(processor, seed: int, init_std: float = 0.1):
    return new_model(
        processor,
        seed,
        init_std,
        text_width=TEXT_WIDTH,
        layers=LAYERS,
        max_positions=MAX_POSITIONS,
        vision_width=VISION_WIDTH,
        vision_layers=VISION_LAYERS,
    )


def false_fact(scene: scenes.Scene, rng: random.Random) -> scene_text.Fact:
    """A fact the scene does not bear out, of the kinds a policy gets wrong: an absent kind (a habit companion
    when there is one), a wrong count, a flipped attribute, two objects swapped."""
    facts = scene_text.scene_facts(scene)
    while True:
        roll = rng.random()
        if roll < 0.3:
            companions = scene_text.absent_companions(scene)
            kind = rng.choice(companions) if companions and rng.random() < 0.5 else None
            fact = scene_text.Fact("count", kind or scene_text.confusable_absent(scene, rng), 1)
        else:
            fact = scene_text.wrong(rng.choice(facts), rng)
        if not scene_text.is_true(fact, scene):
            return fact


def claim_question(fact: scene_text.Fact, style: str = "plain") -> str:
    """The question the rule splitter (`labeling.divide.divide_by_rules`) asks of the fact's sentence: the
    labeler learns exactly the questions the pipeline will put to it."""
    (claim,) = divide_by_rules(QuestionAnswer("", scene_text.sentence(fact, style))).claims
    return claim.question


def scene_rows(
    scene, rng, settings: SceneTrainingSettings, index: int, existence_only: bool = False
) -> list[tuple[str, str, bool]]:
    """One picture's rows as (prompt text, answer text, is a yes/no row): the answer to an instruction, then
    `questions_per_image` yes/no rows (claim questions and AMBER-style probes, true and false alternating;
    existence probes alone with `existence_only`)."""
    kind, question, facts = scene_text.instruction(scene, rng)
    if settings.error_scale:
        rates = {name: rate * settings.error_scale for name, rate in scene_text.ERROR_RATES.items()}
        facts = scene_text.with_errors(facts, scene, rng, rates) if kind == "describe" else facts
    rows = [(question, scene_text.describe(facts, settings.style), False)] if settings.describe else []
    probes = scene_text.probes(scene, rng)
    for k in range(settings.questions_per_image):
        truth = (index + k) % 2 == 0
        if existence_only:
            probe = next(p for p in probes if p.kind == "existence" and p.truth == truth)
            rows.append((probe.question, "Yes" if truth else "No", True))
            continue
        if k % 2 and probes:
            probe = rng.choice([p for p in probes if p.truth == truth] or probes)
            rows.append((probe.question, "Yes" if probe.truth else "No", True))
            continue
        fact = rng.choice(scene_text.scene_facts(scene)) if truth else false_fact(scene, rng)
        style = rng.choice(scene_text.STYLES)  # the second generator's claims are judged too (ablation d)
        rows.append((labeler_prompt(claim_question(fact, style)), "Yes" if truth else "No", True))
    return rows


def curriculum(settings: SceneTrainingSettings) -> list[tuple[str, int]]:
    """The settings' phases as (claim kind, the step it ends before), in order, after the existence steps."""
    ends, end = [], settings.existence_first_steps
    for phase in filter(None, (p.strip() for p in settings.phases.split(","))):
        kind, _, steps = phase.partition(":")
        if kind not in CLAIM_KINDS or not steps.isdigit():
            raise ValueError(f"phases: {phase!r} is not kind:steps with a kind among {', '.join(CLAIM_KINDS)}")
        end += int(steps)
        ends.append((kind, end))
    return ends


def phase_at(settings: SceneTrainingSettings, step: int) -> tuple[str, ...]:
    """The claim kinds the rows of `step` ask: ("existence",) first, then a phase's kind and the earlier
    phases' (its own first), and () once every kind is trained together."""
    if step < settings.existence_first_steps:
        return ("existence",)
    phases = curriculum(settings)
    for i, (kind, end) in enumerate(phases):
        if step < end:
            return (kind, *dict.fromkeys(k for k, _ in phases[:i] if k != kind))
    return ()


def claim_kind(fact: scene_text.Fact) -> str:
    return "relation" if fact.kind in scenes.RELATIONS else fact.kind


def phase_rows(scene, rng, settings: SceneTrainingSettings, kinds: tuple[str, ...]) -> list[tuple[str, str, bool]]:
    """A curriculum phase's rows for one picture (the description first if `describe`): yes/no claims, true and
    the same made wrong alternating, half of `kinds[0]` and half of the later ones (earlier phases revisited);
    a false count row names an absent kind half the time. A kind the picture has no fact of gives way to one
    it has."""
    rows = []
    if settings.describe:
        _, question, facts = scene_text.instruction(scene, rng)
        rows.append((question, scene_text.describe(facts, settings.style), False))
    by_kind: dict[str, list] = {}
    for fact in scene_text.scene_facts(scene):
        by_kind.setdefault(claim_kind(fact), []).append(fact)
    for k in range(settings.questions_per_image):
        wanted = kinds[0] if k % 4 < 2 or len(kinds) == 1 else rng.choice(kinds[1:])
        kind = wanted if wanted in by_kind else next((other for other in kinds if other in by_kind), "count")
        fact, truth = rng.choice(by_kind[kind]), k % 2 == 0
        if not truth:
            absent = kind == "count" and rng.random() < 0.5
            fact = scene_text.Fact("count", scene_text.confusable_absent(scene, rng), 1) if absent else None
            fact = fact or scene_text.wrong(rng.choice(by_kind[kind]), rng)
        question = claim_question(fact, rng.choice(scene_text.STYLES))
        rows.append((labeler_prompt(question), "Yes" if truth else "No", True))
    return rows


def picture_rows(scene, rng, settings: SceneTrainingSettings, index: int, kinds: tuple[str, ...]):
    """One picture's rows at a step asking `kinds` (`phase_at`): a curriculum phase's, else the usual ones."""
    if kinds and kinds != ("existence",):
        return phase_rows(scene, rng, settings, kinds)
    return scene_rows(scene, rng, settings, index, kinds == ("existence",))


def with_some_error(facts: list[scene_text.Fact], scene: scenes.Scene, rng: random.Random) -> list[scene_text.Fact]:
    """The facts with a policy's errors (`scene_text.with_errors`), drawn again until at least one is false:
    false whole answers then come from the distribution the self-rewarding labeler judges, each error in its
    place (one false fact inserted anywhere could be told from the descriptions' order alone)."""
    while True:
        said = scene_text.with_errors(facts, scene, rng)
        if not all(scene_text.is_true(fact, scene) for fact in said):
            return said


def whole_answer_row(scene, rng, truth: bool) -> tuple[str, str, bool]:
    """A whole true description, or one with a policy's errors, asked as the self-rewarding labeler is asked."""
    facts = scene_text.scene_facts(scene)
    if not truth:
        facts = with_some_error(facts, scene, rng)
    question = whole_response_question(scene_text.describe(facts))
    return labeler_prompt(question), "Yes" if truth else "No", True


def make_scene_batch(
    rng: random.Random, encoder: Encoder, processor, settings: SceneTrainingSettings, kinds: tuple[str, ...] = ()
) -> list[Batch]:
    """Fresh world-2 pictures and their rows, as world 1's shared-prefix batches: one of the answers to the
    instructions, one of the short yes/no rows and one of the whole-answer rows, so a yes/no row of twenty
    tokens is not padded to a description's two hundred (one batch of all was four times slower). `kinds`:
    a curriculum phase's (`phase_at`); () for every kind and the whole answers."""
    pictures = [scenes.random_scene(rng) for _ in range(settings.images_per_step)]
    groups: dict[str, list] = {"answers": [], "questions": [], "whole": []}  # pack's rows
    for i, scene in enumerate(pictures):
        for prompt, answer, is_question in picture_rows(scene, rng, settings, i, kinds):
            answer_ids = encoder.word(answer) if is_question else encoder.caption(answer)
            groups["questions" if is_question else "answers"].append(
                (i, encoder.prompt(prompt), answer_ids, is_question)
            )
    for k in range(0 if kinds else settings.whole_answer_questions):
        i = k % len(pictures)
        prompt, answer, _ = whole_answer_row(pictures[i], rng, k % 2 == 0)
        groups["whole"].append((i, encoder.prompt(prompt), encoder.word(answer), True))
    images = pixel_values([scenes.draw(scene) for scene in pictures], processor)
    return [pack(rows, images, encoder) for rows in groups.values() if rows]


def group_losses(model, batches: list[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
    """(caption loss, question loss) over a step's batches: the answers' mean token loss, and the yes/no rows'
    mean over all of them (one token each), whichever batch holds them."""
    caption, question, rows = None, 0.0, 0
    for batch in batches:
        caption_loss, question_loss = batch_losses(model, batch)
        if batch.is_question.all():
            question, rows = question + question_loss * len(batch.is_question), rows + len(batch.is_question)
        else:
            caption = caption_loss
    zero = torch.zeros(())
    return (caption if caption is not None else zero), (question / rows if rows else zero)


def pretrained_tower(steps: int = VISION_STEPS, seed: int = 0, report=print) -> tuple[dict, list[dict]]:
    """A vision tower pretrained on patch targets (`training.scene_vision`), as the state dict every model of
    the world starts from (as LLaVA models share CLIP), and its log with its accuracy on validation patches."""
    processor = build_processor_for_scenes()
    model = new_scene_model(processor, seed)
    log, head = pretrain_vision(model, processor, VisionSettings(steps=steps, seed=seed), report)
    log.append({"validation patches": patch_accuracy(model, head, processor)})
    report(log[-1])
    return model.model.vision_tower.state_dict(), log


def train_scene_model(settings: SceneTrainingSettings, tower: dict, report=print, report_every: int = 100):
    """A new seeded model on the pretrained `tower` (frozen, as LLaVA freezes its CLIP: the yes/no answers
    are too little signal to keep it sharp) trained on the world's stream; returns (model, processor, log)."""
    curriculum(settings)  # a malformed phase fails here, not an hour in
    processor = build_processor_for_scenes()
    model = new_scene_model(processor, settings.init_seed, settings.init_std)
    model.model.vision_tower.load_state_dict(tower)
    model.model.vision_tower.requires_grad_(False)
    steps = iter(range(settings.steps))

    def batches(rng, encoder, processor, settings):
        return make_scene_batch(rng, encoder, processor, settings, phase_at(settings, next(steps)))

    log = train_model(
        model,
        processor,
        settings,
        report,
        report_every,
        batches=batches,
        stream="scenes-training",
        losses=group_losses,
    )
    model.requires_grad_(True)
    return model, processor, log


RECIPES = {
    LABELER: labeler_settings,
    POLICY: policy_settings,
    CHATTY: chatty_settings,
    LONG_LABELER: long_labeler_settings,
}


def load_committed(name: str):
    """The committed weights of `name` in a fresh model of world 2's architecture."""
    from safetensors.torch import load_file

    path = WEIGHTS_DIR / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no committed weights; train them: python -m training scene-models --retrain")
    processor = build_processor_for_scenes()
    model = new_scene_model(processor, seed=0)
    model.load_state_dict(load_file(path))
    return model.eval(), processor


def build_scene_models(
    models_dir, retrain=False, save_weights: bool = False, evaluate: bool = False, report=print
) -> dict:
    """Write the two labelers, the policy and the second generator under `models_dir`: from the committed
    weights (seconds), or trained from their seeds (`retrain`: True for all, or a collection of names, so that
    a changed recipe retrains only its model; about 55 min for all on two cores; `save_weights` then replaces
    the committed ones). A retrained model is a new draw, not the committed one again: CPU kernels are not
    bitwise deterministic, and two runs of the long labeler's recipe read sizes 0.86 and 0.62. Returns each
    checkpoint's path and how long it took; with `evaluate`, each model's figures on 300 validation pictures
    (model building never reads the test split)."""
    retrained = set(RECIPES) if retrain is True else set(retrain or ())
    if unknown := retrained - set(RECIPES):
        raise ValueError(f"unknown scene model(s) {sorted(unknown)}: choose from {sorted(RECIPES)}")
    result = {"paths": {}, "seconds": {}}
    if retrained:
        began = time.perf_counter()
        tower, tower_log = pretrained_tower(report=lambda r: report({"model": "vision tower", **r}))
        result["seconds"]["vision tower"] = round(time.perf_counter() - began, 1)
    for name, recipe in RECIPES.items():
        began = time.perf_counter()
        if name in retrained:
            settings = recipe(0)
            model, processor, log = train_scene_model(
                settings, tower, lambda r, name=name: report({"model": name, **r})
            )
            record = {"settings": asdict(settings), "vision_log": tower_log, "loss_log": log, "source": "trained"}
            if save_weights:
                commit_weights(model, name, record, WEIGHTS_DIR)
        else:
            model, processor = load_committed(name)
            record = committed_record(name, WEIGHTS_DIR) | {"source": f"committed weights {name}.safetensors"}
        result["paths"][name] = save_checkpoint(model, processor, Path(models_dir) / name, record)
        result["seconds"][name] = round(time.perf_counter() - began, 1)
    report(json.dumps({"scene models": {k: str(v) for k, v in result["paths"].items()}}))
    if evaluate:
        folder = Path(models_dir) / "validation-pictures"
        result["figures"] = {name: labeler_figures(result["paths"][name], folder) for name in (LABELER, LONG_LABELER)}
        for name in (POLICY, CHATTY):
            result["figures"][name] = generator_figures(result["paths"][name], folder)
        report(json.dumps({"validation figures": result["figures"]}))
    return result


def labeler_figures(labeler_path, folder, pictures: int = 300, split: str = "validation", seed: int = 0) -> dict:
    """The labeler's accuracy on validation pictures, through the transformers backend: on claim questions (two
    true, two false per picture, either style), by the fact's kind, with AUROC; and on whole answers (a true
    description and one with a policy's errors per picture), the question the self-rewarding arm asks; and the
    same whole answers beside a blank picture, where a labeler that reads the pictures falls to chance."""
    from labeling.backends import load_backend
    from labeling.backends.base import PolarQuery
    from training.shapes_models import auroc

    backend = load_backend("transformers", str(labeler_path))
    rng, stream = random.Random(f"labeler-figures-{seed}"), scenes.scene_rng(seed, split)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    blank = folder / "blank.png"
    scenes.draw(scenes.Scene(())).save(blank)
    asked = []  # (kind, image, prompt, truth)
    for i in range(pictures):
        scene = scenes.random_scene(stream)
        image = folder / f"{split}-{i:05d}.png"
        scenes.draw(scene).save(image)
        for truth in (True, True, False, False):
            fact = rng.choice(scene_text.scene_facts(scene)) if truth else false_fact(scene, rng)
            kind = "relation" if fact.kind in scenes.RELATIONS else fact.kind
            asked.append((kind, image, labeler_prompt(claim_question(fact, rng.choice(scene_text.STYLES))), truth))
        for truth in (True, False):
            prompt, _, _ = whole_answer_row(scene, rng, truth)
            asked.append(("whole", image, prompt, truth))
            asked.append(("whole_blank", blank, prompt, truth))  # a text-only shortcut keeps its accuracy here
    verdicts = backend.yes_no([PolarQuery(image, prompt) for _, image, prompt, _ in asked])
    figures = {}
    for kind in ("count", "size", "pattern", "relation", "claims", "whole", "whole_blank"):
        rows = [
            (v, a)
            for v, a in zip(verdicts, asked, strict=True)
            if a[0] == kind or (kind == "claims" and not a[0].startswith("whole"))
        ]
        p_yes = [v.p_yes / (v.p_yes + v.p_no) if v.p_yes + v.p_no > 0 else 0.5 for v, _ in rows]
        truths = [a[3] for _, a in rows]
        figures[kind] = {
            "questions": len(rows),
            "accuracy": round(sum(v.accepted == a[3] for v, a in rows) / len(rows), 4),
            "auroc": round(auroc(p_yes, truths), 4),
        }
    return figures


def generator_figures(model_path, folder, pictures: int = 300, split: str = "validation") -> dict:
    """A describing model's AMBER-style figures on validation pictures (one sampled description each, at the
    iterations' temperature) and its answers to the probes."""
    from labeling.backends import load_backend
    from labeling.backends.base import Sampling
    from training.scene_ablations import draw_tasks, score_checkpoint, test_probes
    from training.scene_metrics import discriminative, summarise

    tasks = draw_tasks(folder, pictures, split, seed=0, describe_only=True)
    sampling = Sampling(temperature=0.7, max_new_tokens=240)
    scored = score_checkpoint(load_backend("transformers", str(model_path)), tasks, test_probes(tasks), sampling)
    generative = {k: round(v, 4) if isinstance(v, float) else v for k, v in summarise(scored.records).items()}
    return {"generative": generative, "discriminative": discriminative(p for own in scored.probe_answers for p in own)}
