"""The figures a policy cannot game by repeating or padding: on hand-made answers."""

import pytest

from labeling.answer_shape import answer_shape, drift, drift_warnings, shape_metrics


def test_a_claim_repeats_when_its_words_match_an_earlier_one_of_the_same_answer():
    shape = answer_shape(
        "There is a red circle. There is a red circle! There is a blue square.",
        ["There is a red circle.", "there is a  red circle!", "There is a blue square."],
    )
    assert (shape.words, shape.claims, shape.distinct_claims, shape.repeated_claims) == (15, 3, 2, 1)


def test_shape_metrics_average_per_answer():
    shapes = [
        answer_shape("A red circle. A red circle.", ["A red circle.", "A red circle."]),
        answer_shape("A blue square.", ["A blue square."]),
        answer_shape("Nothing to say here today.", []),
    ]
    metrics = shape_metrics(shapes)
    assert metrics["answers"] == 3
    assert metrics["mean_words"] == pytest.approx((6 + 3 + 5) / 3)
    assert metrics["mean_claims"] == pytest.approx(1)
    assert metrics["mean_distinct_claims"] == pytest.approx(2 / 3)
    assert metrics["mean_repeated_claims"] == pytest.approx(1 / 3)
    assert metrics["repetition_share"] == pytest.approx(1 / 3)
    assert shape_metrics([])["repetition_share"] is None


def test_drift_is_measured_from_the_start_and_warns_past_its_thresholds():
    start = {"repetition_share": 0.37, "mean_words": 14.1, "mean_distinct_claims": 2.0}
    gamed = {"repetition_share": 0.74, "mean_words": 18.3, "mean_distinct_claims": 1.9}
    moved = drift(gamed, start)
    assert moved["repetition_share_change"] == pytest.approx(0.37)
    assert moved["words_ratio"] == pytest.approx(18.3 / 14.1)
    assert moved["distinct_claims_ratio"] == pytest.approx(0.95)
    warnings = drift_warnings(moved)
    assert len(warnings) == 2 and "37 points" in warnings[0] and "30% longer" in warnings[1]

    steady = {"repetition_share": 0.40, "mean_words": 15.0, "mean_distinct_claims": 2.0}
    assert drift_warnings(drift(steady, start)) == []
    assert drift({"repetition_share": None}, start)["repetition_share_change"] is None
