"""The dashboard's counts are kept up to date by every writer and always equal a recount of the data; so are
the instructions of each source, counted by triggers."""

import random
from collections import Counter
from dataclasses import asdict

import pytest
from django.core.management import call_command
from django.db.models import Count

from tests.factories import ClaimFactory, InstructionFactory, IterationFactory, JobFactory, ResponseFactory
from tests.review_data import reviewing_iteration
from webapp.iterations import counts
from webapp.iterations.metrics import iteration_stats
from webapp.jobs import rlaifv
from webapp.models import (
    Claim,
    Decision,
    Instruction,
    InstructionSource,
    IterationCounts,
    IterationStatus,
    JobKind,
    PreferencePair,
    Review,
)
from webapp.review.service import apply_margin, record_review, set_excluded, undo_review

pytestmark = pytest.mark.django_db


def stored(iteration) -> dict:
    row = IterationCounts.objects.get(iteration=iteration)
    return {name: getattr(row, name) for name in counts.COUNTED} | {"scores": row.scores}


def recounted(iteration) -> dict:
    iteration.refresh_from_db()  # its margin decides the labeler's verdicts
    fresh = counts.tally(iteration)
    return {name: getattr(fresh, name) for name in counts.COUNTED} | {
        "scores": {str(s): n for s, n in sorted(fresh.scores.items()) if n}
    }


def test_the_combine_stage_stores_the_counts_it_made(alice):
    iteration = reviewing_iteration([[0.9, 0.9], [0.9, 0.2], [0.2, 0.2]])
    assert stored(iteration) == recounted(iteration)
    assert stored(iteration) | {"scores": None} == {
        "responses": 3, "scored": 3, "rejected": 3, "claims": 6, "pairs": 3, "excluded": 0, "agree": 0,
        "decided": 0, "scores": None,
    }  # fmt: skip
    assert stored(iteration)["scores"] == {"-2": 1, "-1": 1, "0": 1}


def test_stage_chunks_add_what_they_wrote_to_the_counts():
    iteration = IterationFactory(status=IterationStatus.DIVIDING)
    instructions = [InstructionFactory(), InstructionFactory()]
    texts = ["A cat sits on the sofa. A dog sleeps by the door.", "A red car is parked outside."]
    for instruction in instructions:
        iteration.instructions.add(instruction)
        for seed, text in enumerate(texts):
            ResponseFactory(iteration=iteration, instruction=instruction, seed=seed, text=text)
    for n, instruction in enumerate(instructions):
        rlaifv.divide(JobFactory(iteration=iteration, kind=JobKind.DIVIDE, chunk=n, instruction_ids=[instruction.pk]))
        row = IterationCounts.objects.get(iteration=iteration)
        made = Claim.objects.filter(response__instruction__in=instructions[: n + 1]).count()
        assert (row.responses, row.claims) == (4, made) and made > n
        assert stored(iteration) == recounted(iteration)


def test_counts_stay_equal_to_a_recount_after_random_reviews_undos_and_exclusions(alice, bob):
    rng = random.Random(7)
    iteration = reviewing_iteration(
        *[[[rng.choice([0.1, 0.4, 0.6, 0.9]) for _ in range(3)] for _ in range(4)] for _ in range(5)],
        config={"pairs_per_instruction": 2},
    )
    claims = list(Claim.objects.filter(response__iteration=iteration).select_related("response"))
    steps = Counter()
    for _ in range(150):
        step = rng.choice(["decide", "decide", "undo", "exclude"])
        reviewer = rng.choice([alice, bob])
        if step == "decide":
            record_review(
                rng.choice(claims), reviewer, rng.choice([Decision.CORRECT, Decision.HALLUCINATED, Decision.UNSURE])
            )
        elif step == "undo":
            mine = (
                Review.objects.standing()
                .filter(reviewer=reviewer, iteration=iteration)
                .select_related("claim__response")
            )
            if not mine.exists():
                continue
            undo_review(rng.choice(list(mine)), reviewer)
        else:
            pair = rng.choice(list(PreferencePair.objects.filter(iteration=iteration)))
            set_excluded(pair, reviewer, rng.random() < 0.6)
        steps[step] += 1
        assert stored(iteration) == recounted(iteration), f"after {steps}"
    assert min(steps.values()) > 10
    assert stored(iteration)["decided"] > 0 and stored(iteration)["excluded"] > 0


def test_the_dashboard_counts_an_iteration_without_counts_once_and_reads_them_after(
    client, alice, django_assert_max_num_queries
):
    iteration = IterationFactory(status=IterationStatus.DIVIDING)
    response = ResponseFactory(iteration=iteration)
    ClaimFactory(response=response, index=0)
    assert not IterationCounts.objects.exists()  # written by hand, as bench/web.py's COPY does
    (stats,) = iteration_stats([iteration])
    assert (stats.responses, stats.claims) == (1, 1)
    assert stored(iteration) == recounted(iteration)
    with django_assert_max_num_queries(2):
        iteration_stats([iteration])


def test_refresh_counts_recounts_every_iteration(capsys):
    iteration = reviewing_iteration([[0.9], [0.2]])
    IterationCounts.objects.filter(iteration=iteration).update(claims=99, scores={})
    call_command("refresh_counts")
    assert stored(iteration) == recounted(iteration)
    assert f"{iteration}: 2 answers, 2 claims, 1 pairs" in capsys.readouterr().out


def test_a_tally_subtracts_and_adds_back():
    a = counts.Tally(responses=3, pairs=2, scores=Counter({0: 2, -1: 1}))
    b = counts.Tally(responses=1, pairs=2, scores=Counter({0: 1}))
    assert asdict((a - b) + b) == asdict(a)


def sources() -> dict[str, int]:
    return dict(InstructionSource.objects.filter(instructions__gt=0).values_list("name", "instructions"))


def test_triggers_count_the_instructions_of_each_source_however_they_are_written():
    InstructionFactory(source="coco")
    Instruction.objects.bulk_create([InstructionFactory.build(source=s) for s in ["coco", "vqa", "vqa", "web"]])
    assert sources() == {"coco": 2, "vqa": 2, "web": 1}
    Instruction.objects.filter(source="vqa").update(source="coco")
    Instruction.objects.filter(source="web").delete()
    renamed = Instruction.objects.filter(source="coco").first()
    renamed.source = "textvqa"
    renamed.save()
    grouped = Instruction.objects.values_list("source").annotate(n=Count("id")).order_by()
    assert sources() == dict(grouped) == {"coco": 3, "textvqa": 1}


def test_a_new_margin_recounts_the_scores_pairs_and_agreement(alice, bob):
    iteration = reviewing_iteration([[0.9, 0.6], [0.6, 0.2], [0.2, 0.2]])
    record_review(Claim.objects.get(response__iteration=iteration, response__seed=0, index=1), alice, "hallucinated")
    before = stored(iteration)
    apply_margin(iteration.pk, bob, 0.3)  # p_yes 0.6 against p_no 0.4 is now rejected
    assert stored(iteration) == recounted(iteration) != before
    assert stored(iteration)["rejected"] > before["rejected"] and stored(iteration)["agree"] == 1
