"""Combine: turn labelled responses into preference pairs (RLAIF-V step 4).

Pure functions over plain data, so the web app can re-run them whenever a reviewer overrides a verdict.
The caller passes only responses whose split succeeded (``split_failed`` responses have no claims, so
their score would wrongly be a perfect 0) and counts rejections from the effective verdicts.

Order, as in the reference: candidate pairs per instruction -> at most k sampled per instruction ->
length balancing over the whole set passed in (one dataset-level ratio r, normally one iteration).
"""

import hashlib
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations

PAIRS_PER_INSTRUCTION = 2
# r runs over 0, 0.02, ..., 0.98 (the reference's np.arange(0, 1, 0.02)); kept as i/50 so the filter
# compares integers exactly instead of accumulated floats.
RATIO_STEPS = 50


@dataclass(frozen=True)
class ScoredResponse:
    """One response with its number of rejected claims.

    ``id`` must be unique across the set; ids and instruction ids must be sortable (ints or strings),
    because sorting is what makes the sampling independent of input order.
    """

    id: Hashable
    instruction_id: Hashable
    text: str
    n_rejected: int

    @property
    def score(self) -> int:
        return score(self.n_rejected)


@dataclass(frozen=True)
class Pair:
    """A preference pair within one instruction; ``score_gap`` = chosen score - rejected score >= 1."""

    instruction_id: Hashable
    chosen_id: Hashable
    rejected_id: Hashable
    score_gap: int


def score(n_rejected: int) -> int:
    """RLAIF-V's response score: minus the number of rejected claims, not normalised by claim count."""
    return -n_rejected


@dataclass(frozen=True)
class Combined:
    """The pairs, and the length ratio r applied to them (None: lengths not balanced, or no r keeps a pair)."""

    pairs: list[Pair]
    length_ratio: float | None


def make_pairs(
    responses: Iterable[ScoredResponse],
    k: int = PAIRS_PER_INSTRUCTION,
    seed: int = 0,
    length_balance: bool = True,
    length_ratio: float | None = None,
    chosen_is_best: bool = False,
) -> list[Pair]:
    """The iteration's preference pairs, sorted by (instruction, chosen, rejected).

    ``length_ratio`` applies that r instead of searching for the best one: rebuilding one instruction's
    pairs re-uses its iteration's r, which one instruction's few pairs would not reproduce.
    """
    return combine_pairs(responses, k, seed, length_balance, length_ratio, chosen_is_best).pairs


def combine_pairs(
    responses: Iterable[ScoredResponse],
    k: int = PAIRS_PER_INSTRUCTION,
    seed: int = 0,
    length_balance: bool = True,
    length_ratio: float | None = None,
    chosen_is_best: bool = False,
) -> Combined:
    """make_pairs, also returning the r it applied, so the caller can record it for later rebuilds."""
    responses = list(responses)
    candidates = candidate_pairs(responses, chosen_is_best)
    pairs, ratio = sample_pairs(candidates, k=k, seed=seed, positions=positions(responses)), None
    if length_balance:
        pairs, ratio = _balance(pairs, responses, length_ratio)
    return Combined(sorted(pairs, key=lambda p: (p.instruction_id, p.chosen_id, p.rejected_id)), ratio)


def candidate_pairs(responses: Iterable[ScoredResponse], chosen_is_best: bool = False) -> list[Pair]:
    """Every unordered pair within an instruction whose scores differ (ties dropped), higher score chosen.

    Pairs of identical text (up to whitespace) are dropped here, before sampling; the reference drops them
    after sampling, in its length filter, which can cost an instruction one of its k pairs for nothing.
    With ``chosen_is_best`` (not the paper's), only pairs whose chosen answer has its instruction's best score
    are kept: a pair never teaches that an answer with a fault of its own is right.
    """
    by_instruction = defaultdict(list)
    seen = set()
    for response in responses:
        if response.id in seen:
            raise ValueError(f"duplicate response id {response.id!r}")
        seen.add(response.id)
        by_instruction[response.instruction_id].append(response)

    pairs = []
    for instruction_id in sorted(by_instruction):
        group = sorted(by_instruction[instruction_id], key=lambda r: r.id)
        best = max(r.score for r in group)
        for a, b in combinations(group, 2):
            if a.score == b.score or a.text.split() == b.text.split():
                continue
            chosen, rejected = (a, b) if a.score > b.score else (b, a)
            if chosen_is_best and chosen.score < best:
                continue
            pairs.append(Pair(instruction_id, chosen.id, rejected.id, chosen.score - rejected.score))
    return pairs


def positions(responses: Iterable[ScoredResponse]) -> dict:
    """Each response's place among its instruction's responses, in id order: what a pair's draw is seeded by,
    so two runs that store the same answers under other ids (another worker count, another database) draw the
    same pairs."""
    by_instruction = defaultdict(list)
    for response in responses:
        by_instruction[response.instruction_id].append(response.id)
    return {rid: n for ids in by_instruction.values() for n, rid in enumerate(sorted(ids))}


def sample_pairs(
    candidates: Iterable[Pair], k: int = PAIRS_PER_INSTRUCTION, seed: int = 0, positions: dict | None = None
) -> list[Pair]:
    """At most k pairs per instruction, drawn uniformly without replacement.

    Each unordered pair of answers gets a random priority seeded from (seed, instruction, its two answers'
    `positions` — their ids when none are given), and
    an instruction keeps its k candidates of highest priority. So a pair's draw depends only on its own priority
    and which candidates outrank it: not on input order, not on other instructions, and not on which way round
    a pair is ordered. A review that flips one pair's order keeps every pair; one that makes a tie swaps in at
    most the next pair in priority, and the pairs that stay keep their stored rows (and ids).
    The reference uses the global unseeded ``random.sample``.
    """
    by_instruction = defaultdict(list)
    for pair in candidates:
        by_instruction[pair.instruction_id].append(pair)
    sampled = []
    for instruction_id in sorted(by_instruction):
        group = by_instruction[instruction_id]
        if len(group) > k:
            group = sorted(group, key=lambda p: _priority(seed, p, positions))[:k]
        sampled.extend(group)
    return sampled


def _priority(seed: int, pair: Pair, positions: dict | None) -> bytes:
    """A pair's seeded random rank (smaller first), the same whichever of its answers is chosen."""
    place = positions.get if positions is not None else (lambda rid: rid)
    low, high = sorted((place(pair.chosen_id), place(pair.rejected_id)))
    return hashlib.blake2b(repr((seed, pair.instruction_id, low, high)).encode(), digest_size=8).digest()


def _balance(pairs, responses, length_ratio: float | None) -> tuple[list[Pair], float | None]:
    words = {r.id: len(r.text.split()) for r in responses}
    lengths = [(words[p.chosen_id], words[p.rejected_id]) for p in pairs]
    if length_ratio is None:
        step = _best_length_step(lengths)
        if step is None:
            return [], None
        ratio = Fraction(step, RATIO_STEPS)
    else:
        if length_ratio < 0:
            raise ValueError(f"length ratio must be >= 0, not {length_ratio}")
        ratio = Fraction(str(length_ratio))  # str: 0.14 is 7/50 exactly, as the grid meant it
    kept = [p for p, (c, r) in zip(pairs, lengths, strict=True) if _keeps(c, r, ratio)]
    return kept, float(ratio)


def best_length_ratio(lengths: Sequence[tuple[int, int]]) -> float | None:
    """The r in 0, 0.02, ..., 0.98 minimising |mean chosen - mean rejected| / mean rejected over kept pairs.

    ``lengths`` holds (chosen words, rejected words) per pair. Ties go to the smallest r, as the
    reference's ``idxmin`` does. An r that keeps no pair is skipped (the reference divides by zero);
    None when every r keeps none.
    """
    step = _best_length_step(lengths)
    return None if step is None else step / RATIO_STEPS


def _best_length_step(lengths: Sequence[tuple[int, int]]) -> int | None:
    # best_length_ratio as an exact grid index i (r = i / 50).
    best_step, best_gap = None, None
    for step in range(RATIO_STEPS):
        kept = [(c, r) for c, r in lengths if _keeps(c, r, Fraction(step, RATIO_STEPS))]
        if not kept:
            continue
        gap = _relative_length_gap(kept)
        if best_gap is None or gap < best_gap:
            best_step, best_gap = step, gap
    return best_step


def _keeps(chosen_words: int, rejected_words: int, ratio: Fraction) -> bool:
    """False when the chosen answer is shorter by more than r of the rejected one.

    (rejected - chosen) / rejected > r, in integers. An empty rejected answer cannot be longer than the
    chosen one, so such a pair is never dropped (the reference divides by zero).
    """
    return (rejected_words - chosen_words) * ratio.denominator <= ratio.numerator * rejected_words


def _relative_length_gap(kept: Sequence[tuple[int, int]]) -> Fraction | float:
    # Means over the same pairs, so |mean_c - mean_r| / mean_r == |sum_c - sum_r| / sum_r; exact, so
    # equal gaps tie exactly and the smallest r wins.
    chosen = sum(c for c, _ in kept)
    rejected = sum(r for _, r in kept)
    if rejected == 0:
        return Fraction(0) if chosen == 0 else float("inf")
    return Fraction(abs(chosen - rejected), rejected)
