"""The whole-response strategy: the labeler judges each whole answer with one question, the paper's baseline to
divide and conquer; and `config["generator"]`, the model whose answers are the candidates."""

from pathlib import Path

import pytest
from django.core.management import call_command

from labeling.backends import load_backend
from labeling.backends.base import Sampling
from labeling.generate import Instruction as LabelingInstruction
from labeling.generate import generate_candidates
from labeling.shapes import caption, description_is_true
from labeling.whole_response import whole_response_question
from tests.factories import (
    ClaimFactory,
    InstructionFactory,
    IterationFactory,
    JobFactory,
    ResponseFactory,
    VerdictFactory,
)
from tests.shapes_world import install_shapes_world, launched_to_gate
from tests.test_pipeline import wait_for
from training.evaluate import labeler_accuracy
from training.shapes_models import ITERATION_CONFIG, LABELER
from webapp.iterations import lifecycle
from webapp.jobs import rlaifv, whole_response
from webapp.models import Claim, Decision, Instruction, IterationStatus, JobKind, Response, ResponseStatus, Verdict
from webapp.review.service import record_review

S = IterationStatus


def test_the_question_is_the_claim_question_widened_to_the_whole_answer():
    two = "There is a red circle.  There is a blue\nsquare."
    assert whole_response_question(two) == "Is it true that there is a red circle. There is a blue square?"
    # One sentence: exactly the rule splitter's question about it, which the shapes labeler was trained on.
    assert whole_response_question("There is a red circle.") == "Is it true that there is a red circle?"
    assert whole_response_question("I see a dog!") == "Is it true that I see a dog?"
    assert whole_response_question("COCO shows cats") == "Is it true that COCO shows cats?"


def test_the_shapes_labelers_words_cover_the_question():
    from training.shapes_models import build_processor_for_shapes

    tokenizer = build_processor_for_shapes().tokenizer
    question = whole_response_question(caption(["red circle", "yellow triangle", "green square"]))
    assert tokenizer.unk_token_id not in tokenizer(question)["input_ids"]
    # The wording the paper's prompt suggests would feed it four words it never saw.
    unknown = tokenizer("Is this description of the image accurate?")["input_ids"].count(tokenizer.unk_token_id)
    assert unknown == 4


def test_a_description_is_true_when_every_object_it_names_is_there():
    assert description_is_true(caption(["red circle", "blue square"]), ["blue square", "red circle"]) is True
    assert description_is_true(caption(["red circle", "blue square"]), ["red circle"]) is False
    assert description_is_true("A nice picture.", ["red circle"]) is None
    judgements = [
        (whole_response_question(caption(["red circle", "blue square"])), False, ["red circle"]),  # right
        (whole_response_question(caption(["red circle"])), False, ["red circle"]),  # wrong
        ("Is it true that it is nice?", True, ["red circle"]),  # unknown
    ]
    counted = labeler_accuracy(judgements, description_is_true)
    assert counted == {"labeler_accuracy": 0.5, "claims_judged": 2, "claims_unknown": 1}


@pytest.mark.django_db
def test_divide_makes_one_claim_of_each_whole_answer_and_fails_an_empty_one():
    iteration = IterationFactory(status=S.DIVIDING, config={"strategy": "whole_response"})
    instruction = InstructionFactory()
    iteration.instructions.add(instruction)
    texts = ["There is a red circle. There is a blue square.", "  ", "There is a green triangle."]
    for seed, text in enumerate(texts):
        ResponseFactory(iteration=iteration, instruction=instruction, seed=seed, text=text)
    job = JobFactory(iteration=iteration, kind=JobKind.DIVIDE, chunk=0, instruction_ids=[instruction.pk], total=0)
    whole_response.divide(job)
    whole_response.divide(job)  # a duplicate delivery adds nothing

    claims = Claim.objects.filter(response__iteration=iteration).order_by("response__seed")
    assert [(c.response.seed, c.index, c.text, c.question) for c in claims] == [
        (0, 0, texts[0], "Is it true that there is a red circle. There is a blue square?"),
        (2, 0, texts[2], "Is it true that there is a green triangle?"),
    ]
    assert {c.divided_by for c in claims} == {"whole_response"}
    empty = Response.objects.get(iteration=iteration, seed=1)
    assert (empty.status, empty.error) == (ResponseStatus.SPLIT_FAILED, "empty answer")


@pytest.mark.django_db
def test_combine_pairs_accepted_against_rejected_answers_and_checks_whole_answers_against_the_truth():
    iteration = IterationFactory(
        status=S.COMBINING, config={"strategy": "whole_response", "length_balance": False, "pairs_per_instruction": 4}
    )
    instruction = InstructionFactory(objects_present=["red circle"])
    iteration.instructions.add(instruction)
    # the labeler accepts the true answer and the one naming an absent blue square (wrong), rejects the last
    answers = [(["red circle"], 0.9), (["red circle", "blue square"], 0.7), (["blue square"], 0.2)]
    for seed, (objects, p_yes) in enumerate(answers):
        text = caption(objects)
        response = ResponseFactory(
            iteration=iteration, instruction=instruction, seed=seed, text=text, status=ResponseStatus.LABELED
        )
        claim = ClaimFactory(response=response, index=0, text=text, question=whole_response_question(text))
        VerdictFactory(claim=claim, labeler=iteration.labeler, p_yes=p_yes, p_no=round(1 - p_yes, 6))
    whole_response.combine(JobFactory(iteration=iteration, kind=JobKind.COMBINE, chunk=0, total=0))

    iteration.refresh_from_db()
    scores = dict(Response.objects.filter(iteration=iteration).values_list("seed", "score"))
    assert scores == {0: 0, 1: 0, 2: -1}
    assert sorted(iteration.pairs.values_list("chosen__seed", "rejected__seed")) == [(0, 2), (1, 2)]
    feedback = iteration.metrics["feedback"]
    assert (feedback["labeler_accuracy"], feedback["claims_judged"]) == (2 / 3, 3)
    assert (feedback["pairs_right"], feedback["pairs_even"]) == (1, 1)


@pytest.mark.slow
@pytest.mark.django_db
def test_the_generate_stage_samples_the_generator_and_not_the_policy(tiny_models_dir, settings, media_root):
    settings.MODELS_DIR = tiny_models_dir
    call_command("load_samples")
    config = {"n": 2, "max_new_tokens": 8, "temperature": 1.0, "generator": "small-llava"}
    iteration = IterationFactory(status=S.GENERATING, policy="tiny-llava", config=config)
    instructions = list(Instruction.objects.filter(split="train").order_by("pk")[:2])
    iteration.instructions.set(instructions)
    ids = [i.pk for i in instructions]
    rlaifv.generate(JobFactory(iteration=iteration, kind=JobKind.GENERATE, chunk=0, instruction_ids=ids, total=0))

    stored = {(r.instruction_id, r.seed): r.text for r in Response.objects.filter(iteration=iteration)}
    inputs = [LabelingInstruction(i.pk, Path(i.image.path), i.question) for i in instructions]
    sampling = Sampling(temperature=1.0, max_new_tokens=8)

    def answers(model):
        backend = load_backend("transformers", str(tiny_models_dir / model))
        candidates = generate_candidates(backend, inputs, n=2, sampling=sampling, base_seed=0)
        return {(c.instruction_id, c.seed): c.text.strip() for c in candidates}

    assert stored == answers("small-llava")
    assert stored != answers("tiny-llava")


@pytest.fixture
def shapes_world(processes, tmp_path, settings):
    """The trained shapes models in the test's MODELS_DIR and a small slice of their world in its database."""
    return install_shapes_world(processes, tmp_path, settings, train=16, heldout=16)


@pytest.mark.slow
def test_a_whole_response_iteration_runs_through_a_worker_with_its_own_labeler(processes, shapes_world, bob):
    processes.worker()
    config = ITERATION_CONFIG | {"strategy": "whole_response", "n": 6, "max_steps": 2, "chunk_size": 8}
    iteration = launched_to_gate(processes, config, timeout=600)

    responses = Response.objects.filter(iteration=iteration, status=ResponseStatus.LABELED)
    claims = Claim.objects.filter(response__iteration=iteration).select_related("response")
    assert responses.count() == claims.count() > 0
    assert all(c.text == c.response.text and c.question == whole_response_question(c.text) for c in claims)
    # The iteration's labeler judged every answer, not the policy.
    assert set(Verdict.objects.filter(claim__in=claims).values_list("labeler", flat=True)) == {LABELER}
    assert set(responses.values_list("score", flat=True)) <= {0, -1}
    feedback = iteration.metrics["feedback"]
    assert feedback["claims_judged"] > 0 and feedback["labeler_accuracy"] > 0.5, feedback
    assert iteration.pairs.exists(), "no answer of 16 instructions × 6 was judged apart from its siblings"

    # A reviewer's decision on the whole answer overrides the labeler and re-scores the answer.
    pair = iteration.pairs.select_related("rejected").first()
    rejected_claim = Claim.objects.get(response=pair.rejected)
    record_review(rejected_claim, bob, Decision.CORRECT)
    assert Response.objects.get(pk=pair.rejected_id).score == 0

    assert lifecycle.approve(iteration)
    wait_for(iteration, S.DONE, S.FAILED, processes=processes, timeout=600)
    assert iteration.status == S.DONE, iteration.error
    evaluation = iteration.metrics["eval"]
    # Held-out answers are judged claim by claim whatever the strategy, by the iteration's labeler.
    assert evaluation["truth_chair_s"] is not None and evaluation["truth_labeler_accuracy"] >= 0.9, evaluation
