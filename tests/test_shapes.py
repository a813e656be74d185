"""The shapes world (labeling.shapes) and its trained tiny models (training.shapes_models)."""

import json
import random

import pytest
from PIL import Image

from labeling import shapes
from labeling.conquer import labeler_prompt
from labeling.divide import QuestionAnswer, divide_by_rules


def scenes(n=200, seed=0):
    rng = random.Random(seed)
    return [shapes.random_scene(rng) for _ in range(n)]


# --- the world ------------------------------------------------------------------------------------------


def test_it_draws_each_object_in_its_colour_at_its_centre():
    for scene in scenes():
        image = shapes.draw(scene)
        for shape in scene.shapes:
            x, y = shape.centre
            if shape.shape == "triangle":
                y = shape.top + 2 * shape.size / 3  # the triangle is widest near its base
            assert image.getpixel((round(x), round(y))) == shapes.COLOURS[shape.colour]


def test_every_coloured_pixel_belongs_to_exactly_one_object_of_that_colour():
    for scene in scenes(50):
        image = shapes.draw(scene)
        for x in range(shapes.IMAGE_PX):
            for y in range(shapes.IMAGE_PX):
                pixel = image.getpixel((x, y))
                if pixel == shapes.BACKGROUND:
                    continue
                owners = [s for s in scene.shapes if s.box[0] <= x <= s.box[2] and s.box[1] <= y <= s.box[3]]
                assert len(owners) == 1
                assert pixel == shapes.COLOURS[owners[0].colour]


def test_scenes_hold_one_to_three_distinct_objects_apart_left_to_right():
    counts = set()
    for scene in scenes():
        counts.add(len(scene.shapes))
        assert len(set(scene.objects)) == len(scene.objects)
        assert [s.centre[0] for s in scene.shapes] == sorted(s.centre[0] for s in scene.shapes)
        for shape in scene.shapes:
            assert shapes.MIN_SIZE <= shape.size <= shapes.MAX_SIZE
            assert 0 <= shape.box[0] and shape.box[2] < shapes.IMAGE_PX
            assert 0 <= shape.box[1] and shape.box[3] < shapes.IMAGE_PX
        for a in scene.shapes:
            for b in scene.shapes:
                if a is not b:
                    apart_x = a.box[2] < b.box[0] or b.box[2] < a.box[0]
                    apart_y = a.box[3] < b.box[1] or b.box[3] < a.box[1]
                    assert apart_x or apart_y
    assert counts == {1, 2, 3}


def test_a_caption_gives_the_rule_splitter_one_claim_per_object_with_the_labelers_question():
    objects = ("red circle", "blue square", "yellow triangle")
    text = shapes.caption(objects)

    result = divide_by_rules(QuestionAnswer("Describe the image.", text))

    assert text == "There is a red circle. There is a blue square. There is a yellow triangle."
    assert [claim.text for claim in result.claims] == [f"There is a {name}." for name in objects]
    assert [claim.question for claim in result.claims] == [shapes.object_question(name) for name in objects]
    assert (
        labeler_prompt(result.claims[0].question) == "Is it true that there is a red circle? Please answer yes or no."
    )


def test_every_caption_the_world_can_write_splits_into_its_objects():
    for scene in scenes(100):
        result = divide_by_rules(QuestionAnswer("What shapes do you see?", shapes.caption(scene.objects)))
        assert [shapes.question_is_true(c.question, scene.objects) for c in result.claims] == [True] * len(
            scene.objects
        )


def test_absent_objects_are_absent_and_mostly_confusable():
    rng = random.Random(1)
    present = ["red circle", "blue square"]
    drawn = [shapes.absent_object(present, rng) for _ in range(2000)]

    assert not set(drawn) & set(present)
    near = [name for name in drawn if name.split()[1] in ("circle", "square") or name.split()[0] in ("red", "blue")]
    assert len(near) / len(drawn) > 0.85  # 80% confusable by design, plus the "any" draws that happen to be


def test_hallucinated_captions_insert_one_absent_object_at_the_given_rate():
    rng = random.Random(2)
    objects = ("green triangle", "yellow circle")

    assert shapes.hallucinated_objects(objects, rng, 0.0) == list(objects)
    injected = shapes.hallucinated_objects(objects, rng, 1.0)
    assert len(injected) == 3 and [name for name in injected if name in objects] == list(objects)
    rate = sum(len(shapes.hallucinated_objects(objects, rng, 0.3)) == 3 for _ in range(2000)) / 2000
    assert 0.26 < rate < 0.34


def test_mentioned_objects_reads_imperfect_answers():
    assert shapes.mentioned_objects("There is a red circle. There is a blue square.") == ["red circle", "blue square"]
    assert shapes.mentioned_objects("There is a red . There is a blue square .") == ["blue square"]
    assert shapes.mentioned_objects("Two Red Circles,and a green triangle!") == ["red circle", "green triangle"]
    assert shapes.mentioned_objects("There is a red circle. There is a red circle.") == ["red circle"] * 2
    assert shapes.mentioned_objects("There is a circle. There is a purple square.") == []
    assert shapes.mentioned_objects("") == []


def test_question_is_true_judges_one_object_questions_against_the_truth():
    objects = ["red circle", "green square"]

    assert shapes.question_is_true("Is it true that there is a red circle?", objects) is True
    assert shapes.question_is_true("Is it true that there is a red square?", objects) is False
    assert shapes.question_is_true("There is a green square.", objects) is True
    assert shapes.question_is_true("Is it true that there is a yellow?", objects) is None
    assert shapes.question_is_true("Is there a red circle and a blue square?", objects) is None


def test_truth_metrics_count_hallucinations_and_recall():
    answers = [
        ("There is a red circle. There is a blue square.", ["red circle"]),  # one of two mentions wrong
        ("There is a green triangle.", ["green triangle", "yellow square"]),  # right, recalls one of two
        ("There is a yellow.", ["blue circle"]),  # mentions nothing
        ("There is a red circle. There is a red circle.", ["red circle"]),  # repeated, right
    ]

    metrics = shapes.truth_metrics(answers)

    assert metrics["answers"] == 4
    assert metrics["answers_with_objects"] == 3
    assert metrics["hallucinated_answers"] == 1
    assert metrics["chair_s"] == pytest.approx(1 / 3)
    assert metrics["mentions"] == 5 and metrics["hallucinated_mentions"] == 1
    assert metrics["chair_i"] == pytest.approx(1 / 5)
    assert metrics["recall"] == pytest.approx(3 / 5)
    assert metrics["mean_words"] == pytest.approx((10 + 5 + 4 + 10) / 4)


def test_truth_metrics_of_no_answers_are_none():
    metrics = shapes.truth_metrics([])
    assert metrics["chair_s"] is None and metrics["chair_i"] is None and metrics["recall"] is None


def test_it_writes_the_same_instruction_set_for_a_seed(tmp_path):
    first = shapes.write_instruction_set(tmp_path / "a", 20, "train", seed=3, questions_per_image=2)
    second = shapes.write_instruction_set(tmp_path / "b", 20, "train", seed=3, questions_per_image=2)
    other = shapes.write_instruction_set(tmp_path / "c", 20, "heldout", seed=3)

    assert first.read_text() == second.read_text()
    for row in shapes.read_instruction_set(first):
        twin = tmp_path / "b" / row["image"].split("/a/", 1)[1]
        assert Image.open(row["image"]).tobytes() == Image.open(twin).tobytes()
    assert shapes.read_instruction_set(other)[0]["objects"] != shapes.read_instruction_set(first)[0]["objects"]


def test_instruction_lines_name_the_image_its_truth_and_split(tmp_path):
    path = shapes.write_instruction_set(tmp_path, 5, "train", seed=0, questions_per_image=2)
    shapes.write_instruction_set(tmp_path, 3, "heldout", seed=0, append=True)

    rows = [json.loads(line) for line in path.read_text().splitlines()]

    assert len(rows) == 5 * 2 + 3
    assert {row["split"] for row in rows} == {"train", "heldout"}
    for row in rows:
        assert set(row) == {"image", "question", "split", "source", "objects"}
        assert row["source"] == "shapes" and row["question"] in shapes.INSTRUCTIONS
        assert (tmp_path / row["image"]).is_file() and not row["image"].startswith("/")
        assert 1 <= len(row["objects"]) <= 3 and all(name in shapes.OBJECTS for name in row["objects"])
    first = [row for row in rows if row["image"] == rows[0]["image"]]
    assert len({row["question"] for row in first}) == 2


def test_the_png_holds_the_scene_it_names(tmp_path):
    path = shapes.write_instruction_set(tmp_path, 10, "heldout", seed=5)
    rng = shapes.scene_rng(5, "heldout")
    for row in shapes.read_instruction_set(path):
        scene = shapes.random_scene(rng)
        rng.sample(shapes.INSTRUCTIONS, 1)
        assert list(scene.objects) == row["objects"]
        assert Image.open(row["image"]).convert("RGB").tobytes() == shapes.draw(scene).tobytes()
