"""Combine: scores, candidate pairs, seeded sampling and the dataset-level length filter."""

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labeling.combine import (
    Pair,
    ScoredResponse,
    best_length_ratio,
    candidate_pairs,
    make_pairs,
    sample_pairs,
    score,
)


def words(n, word="cat"):
    return " ".join([word] * n)


def response(id, n_rejected, text=None, instruction_id=1):
    return ScoredResponse(id, instruction_id, text if text is not None else f"answer {id}", n_rejected)


# --- scores and candidates --------------------------------------------------------------------------------


def test_it_scores_minus_the_rejected_claims():
    assert score(0) == 0
    assert score(3) == -3
    assert response(1, 2).score == -2


def test_it_drops_ties():
    assert candidate_pairs([response(1, 1), response(2, 1), response(3, 1)]) == []


def test_it_prefers_the_response_with_fewer_rejections():
    pairs = candidate_pairs([response(1, 3), response(2, 1)])
    assert pairs == [Pair(instruction_id=1, chosen_id=2, rejected_id=1, score_gap=2)]


def test_it_never_pairs_identical_texts():
    same = [response(1, 0, "A red cup."), response(2, 2, "  A red   cup.\n"), response(3, 1, "A blue cup.")]
    assert {(p.chosen_id, p.rejected_id) for p in candidate_pairs(same)} == {(1, 3), (3, 2)}


def test_it_never_pairs_across_instructions():
    responses = [response(1, 0, instruction_id="a"), response(2, 3, instruction_id="b")]
    assert candidate_pairs(responses) == []


def test_it_refuses_duplicate_response_ids():
    with pytest.raises(ValueError, match="duplicate response id 1"):
        candidate_pairs([response(1, 0), response(1, 2)])


# --- sampling ---------------------------------------------------------------------------------------------


def test_it_keeps_exactly_two_of_ten_candidates():
    responses = [response(i, i) for i in range(5)]
    assert len(candidate_pairs(responses)) == 10
    pairs = make_pairs(responses, k=2, seed=0)
    assert len(pairs) == 2
    assert all(p.score_gap >= 1 for p in pairs)


def test_it_keeps_every_candidate_when_there_are_at_most_k():
    responses = [response(1, 0), response(2, 1)]
    assert make_pairs(responses, k=2) == [Pair(1, 1, 2, 1)]


def test_it_samples_the_same_pairs_for_the_same_seed_in_any_input_order():
    responses = [response(i, i % 4, instruction_id=i % 3) for i in range(30)]
    shuffled = responses[:]
    random.Random(7).shuffle(shuffled)
    assert make_pairs(responses, seed=3) == make_pairs(shuffled, seed=3)


def test_it_samples_differently_under_other_seeds():
    responses = [response(i, i) for i in range(6)]
    draws = {tuple(make_pairs(responses, seed=seed, length_balance=False)) for seed in range(20)}
    assert len(draws) > 1


def test_it_samples_an_instruction_the_same_whatever_other_instructions_exist():
    first = [response(i, i, instruction_id="cat") for i in range(6)]
    other = [response(10 + i, i, instruction_id="dog") for i in range(6)]
    alone = sample_pairs(candidate_pairs(first), seed=5)
    together = sample_pairs(candidate_pairs(first + other), seed=5)
    assert [p for p in together if p.instruction_id == "cat"] == alone


def test_a_flipped_pair_leaves_the_sample_as_it_was():
    before = [response(i, i) for i in range(6)]  # 15 candidates, 2 drawn
    drawn = sample_pairs(candidate_pairs(before), k=2, seed=1)
    a, b = drawn[0].chosen_id, drawn[0].rejected_id
    after = [response(r.id, {a: b, b: a}.get(r.id, r.id)) for r in before]  # a and b swap scores
    redrawn = sample_pairs(candidate_pairs(after), k=2, seed=1)
    assert {frozenset((p.chosen_id, p.rejected_id)) for p in redrawn} == {
        frozenset((p.chosen_id, p.rejected_id)) for p in drawn
    }
    assert Pair(1, b, a, drawn[0].score_gap) in redrawn


def test_a_new_tie_swaps_in_one_pair_and_keeps_the_others():
    before = [response(i, i) for i in range(6)]
    drawn = sample_pairs(candidate_pairs(before), k=3, seed=2)
    tied = drawn[0]
    after = [
        response(r.id, before[tied.chosen_id].n_rejected if r.id == tied.rejected_id else r.n_rejected) for r in before
    ]
    redrawn = sample_pairs(candidate_pairs(after), k=3, seed=2)
    unordered = {frozenset((p.chosen_id, p.rejected_id)) for p in redrawn}
    assert frozenset((tied.chosen_id, tied.rejected_id)) not in unordered and len(redrawn) == 3
    assert len(unordered & {frozenset((p.chosen_id, p.rejected_id)) for p in drawn[1:]}) == 2


# --- length balancing -------------------------------------------------------------------------------------


def test_it_has_no_ratio_without_pairs():
    assert best_length_ratio([]) is None


def test_it_picks_the_smallest_ratio_among_equally_balanced_ones():
    # r < 0.1 keeps only (12, 10): gap 2/10. r in [0.1, 0.5) adds (9, 10): gap 1/20, the best.
    # r >= 0.5 adds (5, 10): gap 4/30. The best gap holds for r = 0.1 ... 0.48; the first wins.
    assert best_length_ratio([(12, 10), (9, 10), (5, 10)]) == 0.1


def test_it_picks_zero_when_no_chosen_answer_is_shorter():
    assert best_length_ratio([(10, 10), (12, 10)]) == 0.0


def test_it_skips_ratios_that_keep_no_pair():
    # (10 - 5) / 10 = 0.5: kept only from r = 0.5 on (drop means "> r").
    assert best_length_ratio([(5, 10)]) == 0.5


def test_it_never_drops_a_pair_for_length_when_the_rejected_answer_is_empty():
    assert best_length_ratio([(3, 0)]) == 0.0
    responses = [response(1, 0, "A red cup."), response(2, 1, "")]
    assert make_pairs(responses) == [Pair(1, 1, 2, 1)]


def test_it_returns_no_pairs_when_every_ratio_drops_them_all():
    # An empty chosen answer is 100 % shorter; r stops at 0.98.
    assert best_length_ratio([(0, 5)]) is None
    assert make_pairs([response(1, 0, ""), response(2, 1, words(5))]) == []


def test_it_balances_lengths_across_all_instructions_at_once():
    responses = [
        response("a1", 0, words(12), "a"),
        response("a2", 1, words(10, "dog"), "a"),
        response("b1", 0, words(9), "b"),
        response("b2", 1, words(10, "dog"), "b"),
        response("c1", 0, words(5), "c"),
        response("c2", 1, words(10, "dog"), "c"),
    ]
    assert {p.instruction_id for p in make_pairs(responses)} == {"a", "b"}
    # Alone, instruction c's pair survives: the ratio is chosen per set passed in.
    assert len(make_pairs(responses[4:])) == 1
    assert len(make_pairs(responses, length_balance=False)) == 3


# --- properties -------------------------------------------------------------------------------------------

responses_strategy = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 12), st.sampled_from(["cat", "dog"])),
    max_size=25,
).map(
    lambda rows: [
        ScoredResponse(id=i, instruction_id=instr, text=words(n, word), n_rejected=n_rej)
        for i, (instr, n_rej, n, word) in enumerate(rows)
    ]
)


@given(responses_strategy, st.integers(1, 3), st.integers(0, 2**32), st.booleans())
def test_pairs_always_respect_the_rules(responses, k, seed, length_balance):
    by_id = {r.id: r for r in responses}
    pairs = make_pairs(responses, k=k, seed=seed, length_balance=length_balance)

    for p in pairs:
        chosen, rejected = by_id[p.chosen_id], by_id[p.rejected_id]
        assert chosen.score > rejected.score
        assert p.score_gap == chosen.score - rejected.score
        assert p.chosen_id != p.rejected_id
        assert chosen.text.split() != rejected.text.split()
        assert chosen.instruction_id == rejected.instruction_id == p.instruction_id
    assert max(Counter(p.instruction_id for p in pairs).values(), default=0) <= k
    assert len({frozenset((p.chosen_id, p.rejected_id)) for p in pairs}) == len(pairs)
    assert set(pairs) <= set(candidate_pairs(responses))


@given(responses_strategy, st.integers(1, 3), st.integers(0, 2**32), st.randoms(use_true_random=False))
def test_sampling_takes_min_k_per_instruction_in_any_order(responses, k, seed, rng):
    shuffled = responses[:]
    rng.shuffle(shuffled)
    pairs = make_pairs(responses, k=k, seed=seed, length_balance=False)
    assert pairs == make_pairs(shuffled, k=k, seed=seed, length_balance=False)
    available = Counter(p.instruction_id for p in candidate_pairs(responses))
    assert Counter(p.instruction_id for p in pairs) == {i: min(k, n) for i, n in available.items()}


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 30)), max_size=12))
def test_the_chosen_ratio_is_the_first_best_on_the_grid(lengths):
    def gap(r):
        kept = [(c, rej) for c, rej in lengths if (rej - c) / rej <= r + 1e-9]
        if not kept:
            return None
        return abs(sum(c for c, _ in kept) - sum(rej for _, rej in kept)) / sum(rej for _, rej in kept)

    grid = [i / 50 for i in range(50)]
    gaps = {r: gap(r) for r in grid if gap(r) is not None}
    r = best_length_ratio(lengths)
    if not gaps:
        assert r is None
        return
    best = min(gaps.values())
    assert gaps[r] == pytest.approx(best)
    assert all(gaps[other] > best + 1e-12 for other in gaps if other < r)


def test_with_chosen_is_best_only_the_instructions_best_answers_are_chosen():
    responses = [ScoredResponse(i, 1, f"answer {i}", n) for i, n in enumerate([0, 1, 2, 0])]
    every = candidate_pairs(responses)
    best = candidate_pairs(responses, chosen_is_best=True)
    assert {(p.chosen_id, p.rejected_id) for p in every} == {(0, 1), (0, 2), (1, 2), (3, 1), (3, 2)}
    assert {(p.chosen_id, p.rejected_id) for p in best} == {(0, 1), (0, 2), (3, 1), (3, 2)}  # 1 over 2 is dropped
    assert make_pairs(responses, k=10, length_balance=False, chosen_is_best=True) == sorted(
        best, key=lambda p: (p.instruction_id, p.chosen_id, p.rejected_id)
    )
