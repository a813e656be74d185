"""The audit estimators and the calibration figures, on synthetic data with a known truth: plain Python."""

import random

import pytest

from labeling.audit import (
    STRATIFIED,
    UNIFORM,
    Stratum,
    draw,
    stratified_estimate,
    stratum_of,
    uniform_estimate,
    wilson_interval,
)
from labeling.calibration import best_margin, expected_calibration_error, pair_changes, reliability

# The labeler's error rate in each band of p_yes: worst where it is least sure, as labelers are.
BAND_ERRORS = (0.06, 0.25, 0.45, 0.3, 0.04)


def synthetic_iteration(rng: random.Random, claims: int = 1000):
    """(claim, p_yes) rows, most of them confident, and which of them the labeler got wrong."""
    rows, wrong = [], {}
    for claim in range(claims):
        p_yes = rng.random() ** 0.5 if rng.random() < 0.7 else rng.random()
        rows.append((claim, p_yes))
        wrong[claim] = rng.random() < BAND_ERRORS[stratum_of(p_yes)]
    return rows, wrong


def audit(design: str, reviews: int, seed: int):
    """An audit of `reviews` claims of a fresh synthetic iteration: its estimate and the true error rate."""
    rng = random.Random(seed)
    rows, wrong = synthetic_iteration(rng)
    sample = draw(rows, reviews, design, rng)
    truth = sum(wrong.values()) / len(rows)
    if design == UNIFORM:
        return uniform_estimate(sum(wrong[c] for c, _ in sample.items), len(sample.items), len(rows)), truth
    strata = [
        Stratum(
            population,
            sum(1 for _, s in sample.items if s == band),
            sum(wrong[c] for c, s in sample.items if s == band),
        )
        for band, population in enumerate(sample.populations)
    ]
    return stratified_estimate(strata), truth


@pytest.mark.parametrize("design", [UNIFORM, STRATIFIED])
def test_it_covers_the_true_error_rate_about_95_percent_of_the_time_without_bias(design):
    runs = [audit(design, reviews=100, seed=seed) for seed in range(400)]
    coverage = sum(e.low <= truth <= e.high for e, truth in runs) / len(runs)
    bias = sum(e.rate - truth for e, truth in runs) / len(runs)
    assert 0.92 <= coverage <= 0.98, coverage
    assert abs(bias) < 0.005, bias


def test_the_interval_narrows_as_reviews_come_in_and_halves_at_about_four_times_the_reviews():
    widths = {}
    for reviews in (50, 200):
        runs = [audit(STRATIFIED, reviews, seed)[0] for seed in range(100)]
        widths[reviews] = sum(e.high - e.low for e in runs) / len(runs)
    assert 0.4 < widths[200] / widths[50] < 0.6
    assert audit(UNIFORM, 50, 0)[0].more_to_halve == 150


def test_the_uniform_estimate_is_the_share_wrong_with_its_wilson_interval():
    estimate = uniform_estimate(errors=3, reviewed=20, population=10**9)
    assert estimate.rate == 0.15
    assert (estimate.low, estimate.high) == pytest.approx(wilson_interval(3, 20), abs=1e-6)
    assert uniform_estimate(3, 20, population=20).low == uniform_estimate(3, 20, population=20).high == 0.15
    assert uniform_estimate(0, 0, 100).rate is None and uniform_estimate(0, 0, 100).more_to_halve is None


def test_the_stratified_estimate_weights_each_band_by_its_size():
    # Two bands: 900 claims, 1 of 10 audited wrong; 100 claims, 5 of 10 wrong. By hand: 0.9·0.1 + 0.1·0.5.
    estimate = stratified_estimate([Stratum(900, 10, 1), Stratum(100, 10, 5)])
    assert estimate.rate == pytest.approx(0.14)
    variance = 0.81 * (1 - 10 / 900) * 0.1 * 0.9 / 9 + 0.01 * (1 - 10 / 100) * 0.25 / 9
    assert estimate.high - estimate.rate == pytest.approx(1.96 * variance**0.5)
    # A band not yet audited twice could hold any rate: no estimate until it is.
    assert stratified_estimate([Stratum(900, 10, 1), Stratum(100, 1, 0)]).rate is None


def test_a_count_that_does_not_add_up_is_refused():
    with pytest.raises(ValueError, match="errors ≤ reviewed ≤ population"):
        Stratum(population=5, reviewed=6, errors=0)


def test_a_stratified_draw_takes_as_many_from_each_band_in_turn():
    rows = [(claim, 0.95) for claim in range(100)] + [(100 + claim, 0.5) for claim in range(5)]
    sample = draw(rows, 10, STRATIFIED, random.Random(1))
    bands = [band for _, band in sample.items]
    assert bands[:2] in ([2, 4], [4, 2]) and bands.count(2) == 5 and bands.count(4) == 5
    assert sample.populations == [0, 0, 5, 0, 100]
    assert len({claim for claim, _ in sample.items}) == 10
    assert draw(rows, 10, STRATIFIED, random.Random(1)) == draw(rows[::-1], 10, STRATIFIED, random.Random(1))


def test_an_unknown_design_is_refused():
    with pytest.raises(ValueError, match="unknown audit design 'biased'"):
        draw([(1, 0.5)], 1, "biased", random.Random(0))


def test_the_reliability_diagram_and_its_calibration_error_match_a_hand_count():
    # Bin [0.1, 0.2): p_yes 0.1, 0.15 — one true; bin [0.9, 1]: 0.9, 1.0, 0.95 — all true.
    points = [(0.1, True), (0.15, False), (0.9, True), (1.0, True), (0.95, True)]
    bins = reliability(points, bins=10)
    assert [(b.n, b.share_true) for b in bins if b.n] == [(2, 0.5), (3, 1.0)]
    assert bins[1].mean_p_yes == pytest.approx(0.125) and bins[9].mean_p_yes == pytest.approx(0.95)
    assert expected_calibration_error(bins) == pytest.approx(2 / 5 * 0.375 + 3 / 5 * 0.05)
    assert expected_calibration_error(reliability([])) is None


def test_the_best_margin_agrees_best_with_the_truth_and_stays_near_zero():
    # p_yes − p_no: 0.6 true, 0.2 false, 0.1 false, −0.4 false. At m = 0 the 0.2 and 0.1 are wrongly accepted;
    # any m in [0.2, 0.6) gets all four right: the candidate there is the midpoint, 0.4.
    points = [(0.8, 0.2, True), (0.6, 0.4, False), (0.55, 0.45, False), (0.3, 0.7, False)]
    fit = best_margin(points)
    assert fit.margin == pytest.approx(0.4)
    assert (fit.agree, fit.agree_at_zero, fit.n) == (4, 2, 4)
    # Where m = 0 is already best, it is kept (of the equally good margins, the nearest zero).
    assert best_margin([(0.9, 0.1, True), (0.1, 0.9, False)]).margin == pytest.approx(0.0)
    assert best_margin([]) is None


def test_pair_changes_count_changed_appeared_and_disappeared_pairs():
    old = [(1, 2, 1), (3, 4, 2), (5, 6, 1), (7, 8, 1)]
    new = [(2, 1, 1), (3, 4, 1), (5, 6, 1), (9, 10, 3)]
    changes = pair_changes(old, new)
    assert (changes.changed, changes.appeared, changes.disappeared, changes.unchanged) == (2, 1, 1, 1)
