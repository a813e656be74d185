"""The shapes world's ground truth in the app: import, the evaluate stage's scores, the combine stage's check
of the labeler and the pairs. The world itself (drawing, captions, parsing) is tested in test_shapes.py."""

import pytest
from django.core.management import call_command

from labeling.divide import QuestionAnswer, divide
from labeling.shapes import caption
from tests.factories import (
    ClaimFactory,
    InstructionFactory,
    IterationFactory,
    JobFactory,
    ResponseFactory,
    VerdictFactory,
)
from training.evaluate import JudgedAnswer, labeler_accuracy, pair_truth, truth_scores
from webapp.jobs import rlaifv
from webapp.models import Instruction, IterationStatus, JobKind, ResponseStatus


@pytest.mark.django_db
def test_load_shapes_imports_instructions_with_their_true_objects_once(media_root):
    call_command("load_shapes", "--train", "4", "--heldout", "2")
    call_command("load_shapes", "--train", "4", "--heldout", "2")
    shapes = Instruction.objects.filter(source="shapes")
    assert shapes.filter(split="train").count() == 4 and shapes.filter(split="heldout").count() == 2
    assert all(1 <= len(i.objects_present) <= 3 for i in shapes)
    assert (shapes.first().width, shapes.first().height) == (64, 64)


def test_truth_scores_measure_answers_and_the_labeler_against_the_true_objects():
    truth = {1: ["red circle", "blue square"], 2: ["green triangle"]}
    answers = [
        # names both true objects and a false one; the labeler accepts all three claims (one mistake)
        JudgedAnswer(
            1,
            caption(["red circle", "blue square", "yellow circle"]),
            (True, True, True),
            None,
            (
                "Is it true that there is a red circle?",
                "Is it true that there is a blue square?",
                "Is it true that there is a yellow circle?",
            ),
        ),  # fmt: skip
        # names the one true object; the labeler wrongly rejects it
        JudgedAnswer(2, caption(["green triangle"]), (False,), None, ("Is it true that there is a green triangle?",)),
        JudgedAnswer(3, "not an instruction with known objects", (True,), None, ("Is it true that it is?",)),
    ]
    scores = truth_scores(answers, truth)
    assert (scores["chair_s"], scores["chair_i"], scores["recall"]) == (0.5, 0.25, 1.0)
    assert (scores["labeler_accuracy"], scores["claims_judged"]) == (0.5, 4)


def test_labeler_accuracy_leaves_out_questions_about_no_known_object():
    judgements = [
        ("Is it true that there is a red circle?", True, ["red circle"]),
        ("Is it true that there is a red circle?", False, ["blue square"]),
        ("Is it true that the picture is nice?", True, ["red circle"]),
    ]
    assert labeler_accuracy(judgements) == {"labeler_accuracy": 1.0, "claims_judged": 2, "claims_unknown": 1}


def test_pair_truth_counts_pairs_that_prefer_fewer_wrong_objects():
    objects = ["red circle"]
    right = (caption(["red circle"]), caption(["red circle", "blue square"]), objects)
    wrong = (caption(["blue square"]), caption(["red circle"]), objects)
    even = (caption(["red circle"]), caption(["red circle"]), objects)
    assert pair_truth([right, wrong, even, right]) == {"pairs_right": 2, "pairs_wrong": 1, "pairs_even": 1}


@pytest.mark.django_db
def test_combine_records_how_right_the_labeler_and_the_pairs_were_where_the_truth_is_known():
    iteration = IterationFactory(status=IterationStatus.COMBINING, config={"length_balance": False})
    instruction = InstructionFactory(objects_present=["red circle"])
    iteration.instructions.add(instruction)
    texts = [caption(["red circle"]), caption(["red circle", "blue square"]), caption(["blue square"])]
    # right, then right and wrong (it accepts the absent blue square), then right (it rejects it): 3 of 4
    verdicts = [[0.9], [0.8, 0.6], [0.3]]
    for seed, (text, p_yes) in enumerate(zip(texts, verdicts, strict=True)):
        response = ResponseFactory(iteration=iteration, instruction=instruction, seed=seed, text=text,
                                   status=ResponseStatus.LABELED)  # fmt: skip
        result = divide([QuestionAnswer(instruction.question, text)])[0]
        for index, (claim, p) in enumerate(zip(result.claims, p_yes, strict=True)):
            row = ClaimFactory(response=response, index=index, text=claim.text, question=claim.question)
            VerdictFactory(claim=row, labeler=iteration.labeler, p_yes=p, p_no=round(1 - p, 6))
    rlaifv.combine(JobFactory(iteration=iteration, kind=JobKind.COMBINE, chunk=0, total=0))
    iteration.refresh_from_db()
    feedback = iteration.metrics["feedback"]
    assert (feedback["claims_judged"], feedback["labeler_accuracy"]) == (4, 0.75)
    # scores 0, 0, -1: the first two answers are each chosen over the third; the first names no wrong object
    # against the third's one (right), the second one as the third (even)
    assert iteration.pairs.count() == 2
    assert (feedback["pairs_right"], feedback["pairs_wrong"], feedback["pairs_even"]) == (1, 0, 1)


@pytest.mark.django_db
def test_combine_records_no_feedback_check_without_ground_truth():
    from tests.review_data import reviewing_iteration

    iteration = reviewing_iteration([[0.9], [0.2]])
    assert "feedback" not in iteration.metrics
