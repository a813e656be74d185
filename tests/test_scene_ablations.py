"""World 2's ablation arms: the pairs each builds (own, self-rewarding, corrections, adapted, mixed), cut to
one number, and written as TRL rows; scored with the control labeler (a real backend that flips coins)."""

import json
import random

from labeling import scene_text as st
from labeling import scenes
from labeling.backends.coin_flip import CoinFlipBackend
from labeling.generate import Candidate
from training import scene_ablations as arms


def tasks(tmp_path, n=6):
    return arms.draw_tasks(tmp_path, n, "train", seed=3)


def candidates(task, texts):
    return [Candidate(task.id, seed, text) for seed, text in enumerate(texts)]


def test_tasks_are_drawn_with_their_pictures_and_true_answers(tmp_path):
    drawn = tasks(tmp_path, 20)
    assert drawn == tasks(tmp_path, 20)  # seeded
    assert all(t.image.is_file() for t in drawn) and {t.kind for t in drawn} <= {"describe", "count", "where"}
    for t in drawn:
        assert all(st.is_true(f, t.scene) for f in t.facts)
    test = arms.draw_tasks(tmp_path / "test", 5, "heldout", seed=0, describe_only=True)
    assert {t.kind for t in test} == {"describe"}


def test_divide_and_conquer_counts_rejected_sentences_and_self_rewarding_judges_the_whole(tmp_path):
    task = tasks(tmp_path)[0]
    true, wrong = st.describe(task.facts), st.describe(st.with_errors(task.facts, task.scene, random.Random(0)))
    own = candidates(task, [true, wrong, "There is a red circle. The red circle is big. There is a red circle."])
    labeler = CoinFlipBackend(seed=1)
    rejected = arms.claim_scores(labeler, [task], own)
    assert set(rejected) == {(task.id, 0), (task.id, 1), (task.id, 2)}
    assert 1 <= rejected[task.id, 2] <= 4 and 0 <= rejected[task.id, 0] <= len(st.sentences(true))
    plain = arms.claim_scores(labeler, [task], own, reject_repeats=False)
    assert rejected[task.id, 2] - plain[task.id, 2] == 1  # the repeat counts as rejected
    whole = arms.whole_scores(labeler, [task], own)
    assert set(whole.values()) <= {0, 1} and set(whole) == set(rejected)


def test_the_perfect_labeler_judges_each_claim_and_answer_by_the_pictures_truth(tmp_path):
    task = next(t for t in tasks(tmp_path, 20) if t.kind == "describe")
    true = st.describe(task.facts)
    absent = next(k for k in scenes.KINDS if not task.scene.counts[k])
    wrong = true + f" There is a {absent}. Anything at all."  # one false claim, one unreadable
    repeated = true + " " + st.sentences(true)[0]
    own = candidates(task, [true, wrong, repeated])
    assert arms.claim_scores(None, [task], own) == {(task.id, 0): 0, (task.id, 1): 2, (task.id, 2): 1}
    assert arms.claim_scores(None, [task], own, reject_repeats=False)[task.id, 2] == 0
    assert arms.whole_scores(None, [task], own) == {(task.id, 0): 0, (task.id, 1): 1, (task.id, 2): 0}


def test_own_pairs_prefer_the_answer_with_fewer_rejected_claims(tmp_path):
    task = tasks(tmp_path)[0]
    own = candidates(task, ["There is a red circle.", "There is a blue square.", "There is a green diamond."])
    scores = {(task.id, 0): 0, (task.id, 1): 2, (task.id, 2): 1}
    pairs = arms.own_pairs(own, scores, seed=0, chosen_is_best=False)
    assert pairs and all(chosen != rejected for _, chosen, rejected in pairs)
    assert ("There is a red circle.", "There is a blue square.") in [(c, r) for _, c, r in pairs]
    best = arms.own_pairs(own, scores, seed=0)
    assert best and {chosen for _, chosen, _ in best} == {"There is a red circle."}


def test_a_correction_replaces_the_chosen_answer_by_the_rejected_one_set_right(tmp_path):
    drawn = [t for t in tasks(tmp_path, 20) if t.kind == "describe"]
    pairs = []
    for n, task in enumerate(drawn):
        wrong = st.describe(
            st.with_errors(task.facts, task.scene, random.Random(n), dict.fromkeys(st.ERROR_RATES, 1.0))
        )
        pairs.append((task.id, st.describe(task.facts), wrong))
    pairs.append((drawn[0].id, "anything", st.describe(drawn[0].facts)))  # a right rejected answer: no correction
    fixed = arms.corrected_pairs(pairs, drawn)
    assert len(fixed) == len(pairs) - 1
    by_id = {t.id: t for t in drawn}
    for (task_id, chosen, rejected), (_, _, original) in zip(fixed, pairs, strict=False):
        assert rejected == original and chosen != rejected
        assert all(f is not None and st.is_true(f, by_id[task_id].scene) for f in st.parse_all(chosen))


def test_pair_truth_says_whether_the_chosen_answer_is_truly_the_better_one(tmp_path):
    task = next(t for t in tasks(tmp_path, 20) if t.kind == "describe")
    true = st.describe(task.facts)
    absent = next(k for k in scenes.KINDS if not task.scene.counts[k])
    wrong = true + f" There is a {absent}."  # one wrong claim, and one object that is not there
    pairs = [(task.id, true, wrong), (task.id, wrong, true), (task.id, true, true)]
    truth = arms.pair_truth(pairs, [task])
    for measure in ("wrong_claims", "count_chair"):
        assert truth[measure] == {"right": 1, "wrong": 1, "tied": 1}


def test_an_adapted_pair_has_the_true_answer_in_the_second_style_as_chosen(tmp_path):
    drawn = tasks(tmp_path)
    pairs = [(t.id, "There is a red circle.", "There is a blue square.") for t in drawn]
    for (task_id, chosen, rejected), task in zip(arms.adapted_pairs(pairs, drawn), drawn, strict=True):
        assert task_id == task.id and rejected == "There is a blue square."
        assert chosen == st.describe(task.facts, "chatty")
        assert st.parse_all(chosen) == list(task.facts)


def test_mixed_candidates_take_half_from_each_generator_and_arms_are_cut_to_one_number(tmp_path):
    drawn = tasks(tmp_path, 2)
    own = [c for t in drawn for c in candidates(t, [f"own {k}" for k in range(4)])]
    other = [c for t in drawn for c in candidates(t, [f"other {k}" for k in range(2)])]
    both = arms.mixed(own, other, 4)
    assert [c.text for c in both] == ["own 0", "own 1", "other 0", "other 1"] * 2
    cut = arms.same_number({"a": list(range(10)), "b": list(range(4)), "c": list(range(7))}, seed=0)
    assert {name: len(pairs) for name, pairs in cut.items()} == {"a": 4, "b": 4, "c": 4}
    assert cut == arms.same_number({"a": list(range(10)), "b": list(range(4)), "c": list(range(7))}, seed=0)


def test_pairs_are_written_as_trl_rows_that_training_reads(tmp_path):
    from training.dpo import load_pairs

    drawn = tasks(tmp_path, 2)
    path = arms.write_pairs([(drawn[1].id, "yes side", "no side")], drawn, tmp_path / "pairs.jsonl")
    row = json.loads(path.read_text())
    assert row["chosen"][0]["content"] == "yes side" and row["prompt"][0]["content"] == drawn[1].question
    dataset = load_pairs(path)
    assert dataset[0]["images"][0].size == (96, 96)
