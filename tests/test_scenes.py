"""Shapes world 2: pictures drawn as their truth says, facts that read back in both styles, errors and
corrections, probes, the AMBER-style metrics on hand-made answers, and the training rows."""

import random

import pytest

from labeling import scene_text as st
from labeling import scenes
from labeling.divide import QuestionAnswer, divide_by_rules
from labeling.scene_text import Fact, Probe
from labeling.scenes import Scene, Thing
from training import scene_metrics

PICTURES = [scenes.random_scene(scenes.scene_rng(0, "train")) for _ in range(300)]


def hand_scene() -> Scene:
    """Two red circles, a big striped blue square left of a small plain yellow triangle inside a big green
    circle; a red circle is an anchor whose companion (a yellow square) is absent."""
    return Scene(
        (
            Thing("red", "circle", "small", "plain", 2, 2, 10),
            Thing("red", "circle", "small", "plain", 2, 60, 10),
            Thing("blue", "square", "big", "striped", 20, 30, 18),
            Thing("green", "circle", "big", "plain", 60, 40, 20),
            Thing("yellow", "triangle", "small", "plain", 65, 45, 10),
        )
    )


# --- pictures -------------------------------------------------------------------------------------------


def test_every_picture_holds_four_to_eight_objects_apart_but_for_one_inside_another():
    for scene in PICTURES:
        assert scenes.MIN_OBJECTS <= len(scene.things) <= scenes.MAX_OBJECTS
        assert max(scene.counts.values()) <= scenes.MAX_COPIES
        for i, a in enumerate(scene.things):
            for b in scene.things[i + 1 :]:
                nested = scenes.inside(a, b) or scenes.inside(b, a)
                assert nested or not _overlap(a, b)


def _overlap(a: Thing, b: Thing) -> bool:
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    return not (ax1 < bx0 or bx1 < ax0 or ay1 < by0 or by1 < ay0)


def test_a_picture_shows_each_object_in_its_colour_and_its_stripes_as_gaps():
    for scene in PICTURES[:100]:
        image = scenes.draw(scene)
        hosts = {id(b) for a in scene.things for b in scene.things if scenes.inside(a, b)}
        for thing in scene.things:
            x0, y0, x1, y1 = thing.box
            cx, cy = round(thing.centre[0]), round(thing.centre[1])
            if id(thing) in hosts:  # its middle is its guest's: look near its left edge
                cx = x0 + 3
            colours = {image.getpixel((cx, y)) for y in (cy - 1, cy, cy + 1)}
            assert scenes.COLOURS[thing.colour] in colours, thing
            if thing.pattern == "striped" and thing.shape == "square":
                assert image.getpixel((cx, y0 + scenes.STRIPE_EVERY - 1)) == scenes.BACKGROUND


def test_the_same_seed_and_split_draw_the_same_pictures_and_splits_differ():
    again = [scenes.random_scene(scenes.scene_rng(0, "train")) for _ in range(5)]
    assert again == PICTURES[:5]
    assert scenes.random_scene(scenes.scene_rng(0, "heldout")) != PICTURES[0]


def test_anchors_usually_come_with_their_companions():
    with_anchor = [s for s in PICTURES if any(k in scenes.COMPANIONS for k in s.counts)]
    together = [
        s for s in with_anchor if any(s.counts[scenes.COMPANIONS[k]] for k in s.counts if k in scenes.COMPANIONS)
    ]
    assert len(together) / len(with_anchor) > 0.5


# --- facts and sentences --------------------------------------------------------------------------------


def test_a_pictures_facts_are_true_read_back_in_both_styles_and_number_ten_to_thirty_on_average():
    lengths = []
    for scene in PICTURES:
        facts = st.scene_facts(scene)
        lengths.append(len(facts))
        assert all(st.is_true(f, scene) for f in facts)
        for style in st.STYLES:
            assert st.parse_all(st.describe(facts, style)) == facts
    assert 10 <= sum(lengths) / len(lengths) <= 30 and max(lengths) <= 32


def test_the_rule_splitter_makes_each_sentence_one_claim_that_reads_back_as_its_fact():
    facts = st.scene_facts(hand_scene())
    for style in st.STYLES:
        claims = divide_by_rules(QuestionAnswer("Describe the image in detail.", st.describe(facts, style))).claims
        assert [st.parse(c.question) for c in claims] == facts


def test_the_hand_scenes_facts():
    facts = st.scene_facts(hand_scene())
    assert st.describe(facts) == (
        "There are two red circles. There is a blue square. The blue square is big. The blue square is striped. "
        "The blue square is left of the green circle. There is a green circle. The green circle is big. "
        "The green circle is plain. The yellow triangle is inside the green circle. There is a yellow triangle. "
        "The yellow triangle is small. The yellow triangle is plain."
    )
    scene = hand_scene()
    assert not st.is_true(Fact("count", "red circle", 1), scene)  # counts are exact
    assert st.is_true(Fact("size", "red circle", "small"), scene)  # one of several has it
    assert not st.is_true(Fact("left_of", "green circle", "blue square"), scene)
    assert set(st.absent_companions(scene)) == {"yellow square", "blue diamond", "purple circle"}


@pytest.mark.parametrize(
    ("text", "fact"),
    [
        ("There are no red circles.", Fact("count", "red circle", 0)),
        ("I cannot see any red circles", Fact("count", "red circle", 0)),
        ("  there are THREE blue squares .", Fact("count", "blue square", 3)),
        ("The blue square has no stripes.", Fact("pattern", "blue square", "plain")),
        ("The green circle holds the yellow triangle.", Fact("inside", "yellow triangle", "green circle")),
        ("Is it true that the red circle sits over the blue square?", Fact("above", "red circle", "blue square")),
        ("The red circle is big and striped.", None),
        ("There is a red.", None),
    ],
)
def test_sentences_parse_in_either_style_and_anything_else_is_unreadable(text, fact):
    assert st.parse(text) == fact


# --- errors, corrections, probes ------------------------------------------------------------------------


def test_errors_at_rate_one_make_every_changed_fact_false_and_at_rate_zero_change_nothing():
    none = dict.fromkeys(st.ERROR_RATES, 0.0)
    every = dict.fromkeys(st.ERROR_RATES, 1.0)
    for n, scene in enumerate(PICTURES[:100]):
        facts = st.scene_facts(scene)
        assert st.with_errors(facts, scene, random.Random(n), none) == facts
        wrong = st.with_errors(facts, scene, random.Random(n), every)
        assert not any(st.is_true(f, scene) for f in wrong if f not in facts or f.kind == "count" and f.value > 1)
        for companion in st.absent_companions(scene):
            assert Fact("count", companion, 1) in wrong


def test_a_correction_keeps_each_sentences_style_and_leaves_only_true_sentences():
    scene = hand_scene()
    text = (
        "There is a red circle. I can see a yellow square. The yellow square looks big. The blue square has no "
        "stripes. The green circle is left of the blue square. The red circle is big and round. The green "
        "circle holds the yellow triangle."
    )
    assert st.corrected(text, scene) == (
        "There are two red circles. The blue square has stripes. The blue square is left of the green circle. "
        "The green circle holds the yellow triangle."
    )
    for n, scene in enumerate(PICTURES[:100]):
        wrong = st.describe(st.with_errors(st.scene_facts(scene), scene, random.Random(n)), "chatty")
        assert all(f is not None and st.is_true(f, scene) for f in st.parse_all(st.corrected(wrong, scene)))


def test_probes_are_true_or_false_as_they_say_and_a_missing_companion_is_asked_about():
    scene = hand_scene()
    found = st.probes(scene, random.Random(0))
    assert {p.kind for p in found} == {"existence", "attribute", "relation"}
    (missing,) = [p for p in found if p.kind == "existence" and not p.truth]
    assert missing.habit and missing.question.removeprefix("Is there a ").removesuffix(" in the image?") in {
        "yellow square",
        "blue diamond",
        "purple circle",
    }
    for scene in PICTURES[:100]:
        found = st.probes(scene, random.Random(1))
        for probe in found:
            assert sum(p.truth for p in found if p.kind == probe.kind) == 1
            assert probe_holds(probe, scene) == probe.truth


def probe_holds(probe: Probe, scene: Scene) -> bool:
    """The probe's truth read from its words: "Is there a red circle in the image?", "Is the red circle big?",
    "Is the red circle left of the blue square?"."""
    words = probe.question.rstrip("?").split()
    if probe.kind == "existence":
        return scene.counts[" ".join(words[3:5])] > 0
    fact = st.parse(f"The {words[2]} {words[3]} is {' '.join(words[4:])}")
    return st.is_true(fact, scene)


# --- metrics --------------------------------------------------------------------------------------------


def test_the_generative_metrics_on_hand_made_answers():
    scene = hand_scene()
    perfect = st.describe(st.scene_facts(scene))
    habit = "There are two red circles. There is a yellow square. The yellow square is big."
    padded = "There are two red circles. There is a red circle. The blue square is small. The blue is."
    records = [scene_metrics.answer_record(t, scene) for t in (perfect, habit, padded)]
    assert records[0] | {"words": 0} == records[0] | {
        "mentioned": 4, "hallucinated": 0, "covered": 4, "present": 4, "surplus": 0, "claims": 12,
        "wrong_claims": 0, "words": 0,
    }  # fmt: skip
    assert (records[1]["hallucinated"], records[1]["habit"], records[1]["covered"]) == (1, 1, 1)
    assert (records[2]["stated"], records[2]["surplus"], records[2]["unreadable"]) == (3, 1, 1)
    assert records[2]["wrong_claims"] == 3  # the surplus count, the wrong size, the broken sentence
    figures = scene_metrics.summarise(records)
    assert figures["chair"] == pytest.approx(1 / 8)  # one hallucinated kind of 4 + 2 + 2 mentioned
    assert figures["cover"] == pytest.approx((4 + 1 + 2) / 12)
    assert figures["hal"] == pytest.approx(1 / 3) and figures["cog"] == pytest.approx(1 / 8)
    assert figures["count_chair"] == pytest.approx(2 / (5 + 3 + 3))  # the yellow square, the third red circle
    assert figures["claim_error"] == pytest.approx((0 + 2 + 3) / (12 + 3 + 4))
    assert figures["repetition"] == 0


def test_the_discriminative_metrics_on_hand_made_answers():
    probes = [Probe("existence", "q", True), Probe("existence", "q", False), Probe("relation", "q", True)]
    figures = scene_metrics.discriminative(zip(probes, [True, True, None], strict=True))
    assert figures["existence"] == {"accuracy": 0.5, "f1": pytest.approx(2 / 3), "yes_rate": 1.0, "probes": 2}
    assert figures["relation"]["accuracy"] == 0 and figures["all"]["accuracy"] == pytest.approx(1 / 3)


# --- training rows --------------------------------------------------------------------------------------


def test_a_training_step_packs_answers_yes_no_rows_and_whole_answers_apart_with_labels_on_answers_only():
    from training import scene_models
    from training.shapes_models import Encoder

    processor = scene_models.build_processor_for_scenes()
    encoder = Encoder(processor)
    settings = scene_models.labeler_settings(0)
    settings.images_per_step, settings.describe, settings.questions_per_image = 4, True, 3
    answers, questions, whole = scene_models.make_scene_batch(random.Random(0), encoder, processor, settings)
    assert len(answers.tail_ids) == 4 and not answers.is_question.any()
    assert len(questions.tail_ids) == 4 * settings.questions_per_image and questions.is_question.all()
    assert len(whole.tail_ids) == settings.whole_answer_questions and whole.tail_ids.shape[1] > 100
    yes, no = (encoder.word(w)[0] for w in ("Yes", "No"))
    for batch in (questions, whole):
        answered = batch.labels[batch.labels != -100]
        assert len(answered) == len(batch.tail_ids) and set(answered.tolist()) == {yes, no}
    decoded = processor.tokenizer.decode(answers.labels[0][answers.labels[0] != -100], skip_special_tokens=True)
    assert st.parse_all(decoded) and None not in st.parse_all(decoded)
    assert 0.4 <= (questions.labels == yes).sum() / len(questions.tail_ids) <= 0.6


def test_a_labeler_can_train_on_yes_no_rows_alone():
    from training import scene_models
    from training.shapes_models import Encoder

    processor = scene_models.build_processor_for_scenes()
    settings = scene_models.labeler_settings(0)
    settings.images_per_step, settings.describe = 4, False
    questions, whole = scene_models.make_scene_batch(random.Random(0), Encoder(processor), processor, settings)
    assert questions.is_question.all() and len(questions.tail_ids) == 4 * settings.questions_per_image
    assert whole.is_question.all() and len(whole.tail_ids) == settings.whole_answer_questions


def test_a_curriculum_runs_existence_then_each_phase_revisiting_the_earlier_ones_then_every_kind():
    from training import scene_models

    settings = scene_models.SceneTrainingSettings(existence_first_steps=10, phases="size:5, pattern:5,size:5")
    assert scene_models.curriculum(settings) == [("size", 15), ("pattern", 20), ("size", 25)]
    assert [scene_models.phase_at(settings, step) for step in (0, 9, 10, 14, 15, 19, 20, 24, 25, 99)] == [
        ("existence",),
        ("existence",),
        ("size",),
        ("size",),
        ("pattern", "size"),
        ("pattern", "size"),
        ("size", "pattern"),
        ("size", "pattern"),
        (),
        (),
    ]
    for bad in ("colour:5", "size", "size:x", "size:-1"):
        with pytest.raises(ValueError, match="phases"):
            scene_models.curriculum(scene_models.SceneTrainingSettings(phases=bad))


@pytest.mark.parametrize("kinds", [("size",), ("pattern", "size"), ("relation", "count", "size"), ("count",)])
def test_a_phase_asks_claims_of_its_kind_and_the_earlier_ones_true_and_false_alternating(kinds):
    from training import scene_models

    settings = scene_models.SceneTrainingSettings(questions_per_image=8, describe=False)
    rng, asked = random.Random(1), []
    for _ in range(40):
        scene = scenes.random_scene(rng)
        rows = scene_models.phase_rows(scene, rng, settings, kinds)
        assert len(rows) == 8 and all(is_question for _, _, is_question in rows)
        for k, (prompt, answer, _) in enumerate(rows):
            (fact,) = st.parse_all(prompt.split("Is it true that ", 1)[1].rsplit("?", 1)[0])
            assert answer == ("Yes" if k % 2 == 0 else "No") and st.is_true(fact, scene) == (k % 2 == 0)
            have = {scene_models.claim_kind(f) for f in st.scene_facts(scene)}
            kind = scene_models.claim_kind(fact)
            assert kind in kinds or not have & set(kinds) and kind == "count"
            asked.append((k % 4 < 2, kind))
    own = [kind for first, kind in asked if first]
    assert own.count(kinds[0]) / len(own) > 0.6  # half the rows ask the phase's own kind
    if len(kinds) > 1:
        assert {kind for first, kind in asked if not first} & set(kinds[1:])  # the other half revisits


def test_a_curriculum_step_holds_no_whole_answers_and_a_description_only_when_asked():
    from training import scene_models
    from training.shapes_models import Encoder

    processor = scene_models.build_processor_for_scenes()
    settings = scene_models.labeler_settings(0)
    settings.images_per_step, settings.describe = 4, True
    answers, questions = scene_models.make_scene_batch(
        random.Random(0), Encoder(processor), processor, settings, ("size",)
    )
    assert len(answers.tail_ids) == 4 and len(questions.tail_ids) == 4 * settings.questions_per_image
    settings.describe = False
    (questions,) = scene_models.make_scene_batch(random.Random(0), Encoder(processor), processor, settings, ("size",))
    assert questions.is_question.all()


def test_the_labeler_learns_the_questions_the_rule_splitter_asks_in_both_styles():
    from training.scene_models import claim_question

    for fact in st.scene_facts(hand_scene()):
        for style in st.STYLES:
            (claim,) = divide_by_rules(QuestionAnswer("", st.sentence(fact, style))).claims
            assert claim_question(fact, style) == claim.question and st.parse(claim.question) == fact


def test_patch_targets_put_each_object_at_its_centre_patch_by_size_so_a_guest_inside_keeps_its_own():
    import torch

    from training.scene_vision import NONE, patch_targets

    targets = patch_targets(hand_scene(), 12, nearby=1)
    assert targets.shape == (4 + 3 * len(scenes.KINDS), 8, 8)
    kind = scenes.KINDS.index
    assert targets[2, 0, 0] == kind("red circle") and targets[3, 0, 0] == 0  # centre (6.5, 6.5)
    assert targets[2, 5, 0] == kind("red circle")  # centre (6.5, 64.5)
    assert targets[0, 3, 2] == kind("blue square") and targets[1, 3, 2] == 1  # striped, centre (28.5, 38.5)
    assert targets[0, 4, 5] == kind("green circle") and targets[2, 4, 5] == kind("yellow triangle")
    assert (targets[[0, 2]] != NONE).sum() == 5 and (targets[[1, 3]] != -100).sum() == 5
    # the small red circle at (2, 2) to (11, 11) covers patch (0, 0): its neighbourhood is rows and columns 0–1
    nearby, big, striped = targets[4 + 3 * kind("red circle") :][:3]
    assert nearby[:2, :2].all() and nearby[4:7, :2].all() and nearby.sum() == 4 + 6
    assert big.sum() == 0 and striped.sum() == 0  # small and plain
    square = targets[4 + 3 * kind("blue square") :][:3]
    assert torch.equal(square[0], square[1]) and torch.equal(square[0], square[2])
    assert square[0].sum() == 4 * 5  # rows 1–4, columns 0–4
    assert targets[4 + 3 * kind("purple diamond") :][:3].sum() == 0


def test_vision_pretraining_lowers_the_patch_loss_and_trains_the_tower_alone():
    import torch

    from training import scene_models, scene_vision

    processor = scene_models.build_processor_for_scenes()
    model = scene_models.new_scene_model(processor, seed=0)
    text_before = model.model.language_model.embed_tokens.weight.clone()
    tower_before = next(model.model.vision_tower.parameters()).clone()
    settings = scene_vision.VisionSettings(steps=40, images_per_step=8, warmup_steps=5)
    log, head = scene_vision.pretrain_vision(model, processor, settings)
    pixels, targets = scene_vision.draw_batch(random.Random(1), processor, 16)
    with torch.no_grad():
        after = sum(scene_vision.head_losses(head, scene_vision.patch_features(model, pixels), targets))
    tokens = (scenes.IMAGE_PX // scene_models.PATCH_PX) ** 2
    untrained = scene_vision.head_losses(scene_vision.PatchHead(96), torch.zeros(16, tokens, 96), targets)
    assert after < 0.6 * sum(untrained)
    assert torch.equal(model.model.language_model.embed_tokens.weight, text_before)
    assert not torch.equal(next(model.model.vision_tower.parameters()), tower_before)
    accuracy = scene_vision.patch_accuracy(model, head, processor, pictures=4)
    assert set(accuracy) == {"objects", "kind", "striped", "empty", "nearby"}


def test_a_false_whole_answer_holds_a_policys_errors_in_place_and_a_true_one_none():
    from training.scene_models import whole_answer_row

    rng = random.Random(0)
    for scene in PICTURES[:60]:
        for truth in (True, False):
            prompt, answer, _ = whole_answer_row(scene, rng, truth)
            said = st.parse_all(prompt.split("Is it true that ", 1)[1].rsplit("?", 1)[0])
            assert None not in said and answer == ("Yes" if truth else "No")
            assert all(st.is_true(f, scene) for f in said) == truth


def test_the_first_steps_ask_only_whether_an_object_is_there():
    from training import scene_models
    from training.shapes_models import Encoder

    processor = scene_models.build_processor_for_scenes()
    encoder = Encoder(processor)
    settings = scene_models.labeler_settings(0)
    settings.images_per_step = 4
    (questions,) = scene_models.make_scene_batch(random.Random(0), encoder, processor, settings, ("existence",))
    assert not settings.describe  # the labeler's recipe: yes/no rows alone, and no whole answers yet
    asked = [
        processor.tokenizer.decode(ids[(labels == -100) & (mask == 1)], skip_special_tokens=True)
        for ids, labels, mask in zip(questions.tail_ids, questions.labels, questions.tail_mask, strict=True)
    ]
    assert len(asked) == 4 * settings.questions_per_image
    assert all(question.startswith("Is there a") and "in the image" in question for question in asked), asked
    yes = encoder.word("Yes")[0]
    assert (questions.labels == yes).sum() == len(asked) // 2


# --- the committed models ---------------------------------------------------------------------------------


def test_retraining_an_unknown_scene_model_fails_before_any_training(tmp_path):
    from training.scene_models import build_scene_models

    with pytest.raises(ValueError, match=r"unknown scene model\(s\) \['scenes-labeller'\]"):
        build_scene_models(tmp_path, retrain=["scenes-labeller"], report=lambda record: None)
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def scene_models_dir(tmp_path_factory):
    from training.scene_models import build_scene_models

    path = tmp_path_factory.mktemp("scene-models")
    build_scene_models(path, report=lambda record: None)
    return path


@pytest.mark.slow
def test_the_committed_scene_models_load_with_the_auto_classes(scene_models_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from training.scene_models import PATCH_PX, RECIPES

    for name in RECIPES:
        processor = AutoProcessor.from_pretrained(scene_models_dir / name)
        model = AutoModelForImageTextToText.from_pretrained(scene_models_dir / name, use_safetensors=True)
        assert model.config.model_type == "llava" and processor.patch_size == PATCH_PX
        assert (scene_models_dir / name / "shapes_training.json").is_file()


@pytest.mark.slow
def test_the_committed_labeler_reads_counts_sizes_and_patterns_from_the_picture(scene_models_dir, tmp_path):
    from training.scene_models import LABELER, labeler_figures

    figures = labeler_figures(scene_models_dir / LABELER, tmp_path, pictures=100)

    # On 300 validation pictures: claims 0.70 (AUROC 0.80), counts AUROC 0.73, sizes 0.84, patterns 0.93;
    # relations at chance (0.50). These 100 are the first of them.
    assert figures["claims"]["questions"] == 400 and figures["claims"]["accuracy"] >= 0.64
    assert figures["count"]["auroc"] >= 0.65
    assert figures["size"]["auroc"] >= 0.75 and figures["pattern"]["auroc"] >= 0.85


@pytest.mark.slow
def test_the_long_labeler_judges_whole_answers_better_than_claims(scene_models_dir, tmp_path):
    from training.scene_models import LONG_LABELER, labeler_figures

    figures = labeler_figures(scene_models_dir / LONG_LABELER, tmp_path, pictures=100)

    # On 300 validation pictures: whole answers 0.82 (AUROC 0.88), claims 0.68, so the self-rewarding arm is
    # not the one handicapped; patterns 0.85 (AUROC 0.95) kept, sizes lost (AUROC 0.57).
    assert figures["whole"]["accuracy"] >= 0.72 and figures["whole"]["accuracy"] > figures["claims"]["accuracy"]
    assert figures["pattern"]["auroc"] >= 0.85
