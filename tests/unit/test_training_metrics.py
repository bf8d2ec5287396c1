"""Metrics on hand-made cases, the baselines, calibration and capacity bands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exportguard.features.registry import FEATURE_NAMES
from exportguard.training.baselines import (
    RED_FLAGS,
    LogisticBaseline,
    fit_logistic,
    red_flag_count,
)
from exportguard.training.calibrate import bands_from_capacity, fit_calibration, fit_platt
from exportguard.training.config import BandsParams
from exportguard.training.metrics import (
    expected_calibration_error,
    precision_at_k,
    recall_at_k,
    recall_by_group,
    score_metrics,
)

from factories import make_feature_table, planted_labels


def test_precision_and_recall_at_k_by_hand() -> None:
    y = np.array([1, 0, 1, 0, 0, 1])
    score = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    assert precision_at_k(y, score, 1) == 1.0
    assert precision_at_k(y, score, 2) == 0.5
    assert precision_at_k(y, score, 3) == pytest.approx(2 / 3)
    assert recall_at_k(y, score, 3) == pytest.approx(2 / 3)
    assert recall_at_k(y, score, 6) == 1.0
    assert precision_at_k(y, score, 100) == 0.5  # k beyond n: all rows


def test_ties_at_the_boundary_count_in_expectation() -> None:
    y = np.array([1, 1, 0, 0])
    score = np.array([1.0, 1.0, 1.0, 1.0])  # a constant score is a random ranking
    assert precision_at_k(y, score, 2) == pytest.approx(0.5)
    y = np.array([1, 0, 1, 0])
    score = np.array([3.0, 2.0, 2.0, 1.0])  # one sure hit, one of two tied picked
    assert precision_at_k(y, score, 2) == pytest.approx(0.75)


def test_expected_calibration_error_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    assert expected_calibration_error(y, np.array([0.0, 0.0, 1.0, 1.0])) == 0.0
    # all in one bin at 0.55: observed rate 0.5 -> error 0.05
    assert expected_calibration_error(y, np.full(4, 0.55)) == pytest.approx(0.05)


def test_recall_by_group() -> None:
    y = np.array([1, 1, 1, 0])
    score = np.array([0.9, 0.1, 0.8, 0.5])
    group = np.array(["a", "a", "b", None], dtype=object)
    assert recall_by_group(y, score, 2, group) == {"a": 0.5, "b": 1.0}


def test_score_metrics_perfect_ranking() -> None:
    y = np.array([0] * 90 + [1] * 10)
    score = np.arange(100, dtype=float)
    m = score_metrics(y, score, k=10, prob=score / 100, top_fraction=0.05)
    assert m["ap"] == pytest.approx(1.0)
    assert m["roc_auc"] == pytest.approx(1.0)
    assert m["precision_at_k"] == 1.0 and m["recall_at_k"] == 1.0
    assert m["k_top_fraction"] == 5 and m["recall_at_top_fraction"] == 0.5
    assert 0.0 <= m["brier"] <= 1.0


def test_red_flag_count_ignores_missing() -> None:
    frame = pd.DataFrame({name: [np.nan, 0.0] for name in FEATURE_NAMES})
    frame.loc[1, "restricted_traffic_share_30d"] = 0.5
    frame.loc[1, "linked_confirmed_positives"] = 2
    assert red_flag_count(frame).tolist() == [0.0, 2.0]
    assert all(name in FEATURE_NAMES for name, _, _ in RED_FLAGS)


def test_logistic_baseline_learns_and_round_trips_as_json() -> None:
    frame = make_feature_table(1500, seed=4)
    y = planted_labels(frame, 4)
    model = fit_logistic(frame, y)
    test = make_feature_table(800, seed=5)
    m = score_metrics(planted_labels(test, 5), model.decision(test), k=50)
    assert m["roc_auc"] > 0.75
    again = LogisticBaseline.from_json(model.to_json())
    np.testing.assert_allclose(again.predict_proba(test), model.predict_proba(test))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-8, 8, allow_nan=False), min_size=4, max_size=80),
    st.integers(0, 2**31 - 1),
)
def test_calibration_is_monotone_and_a_probability(raw: list[float], seed: int) -> None:
    raw_arr = np.array(raw)
    y = (np.random.default_rng(seed).random(len(raw_arr)) < 0.3).astype(int)
    cal = fit_calibration(raw_arr, y)
    grid = np.linspace(-20, 20, 401)
    prob = cal(grid)
    assert np.all(np.diff(prob) >= 0)
    assert prob.min() >= 0.0 and prob.max() <= 1.0


def test_calibration_tracks_observed_rates() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-2 * raw))).astype(int)
    cal = fit_calibration(raw, y)
    assert expected_calibration_error(y, cal(raw)) < 0.02
    # centred isotonic: strictly increasing inside the fitted range (no plateaus to tie on)
    inner = np.linspace(cal.x[0], cal.x[-1], 500)
    assert np.all(np.diff(cal(inner)) > 0)


def test_platt_is_strictly_increasing_calibrated_and_covers_the_span() -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(size=5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-(1.5 * raw - 1)))).astype(int)
    cal = fit_platt(raw, y, span=(-10.0, 12.0))
    assert cal.method == "platt" and cal.to_json()["method"] == "platt"
    assert cal.x[0] <= -10.0 and cal.x[-1] >= 12.0
    assert np.all(np.diff(cal.y) > 0) and 0.0 < cal.y[0] and cal.y[-1] < 1.0
    assert expected_calibration_error(y, cal(raw)) < 0.02
    with pytest.raises(ValueError, match="not positive"):
        fit_platt(raw, (raw < 0).astype(int), span=(-1.0, 1.0))


def test_bands_follow_review_capacity() -> None:
    prob = np.linspace(0.0, 1.0, 10001)
    bands = bands_from_capacity(prob, BandsParams(review_capacity_per_week=50))
    assigned = bands.assign(prob)
    assert (assigned != "low").sum() == 50
    assert (assigned == "high").sum() == 10
    small = bands_from_capacity(np.array([0.2, 0.1]), BandsParams(review_capacity_per_week=50))
    assert small.review == pytest.approx(0.1)
    with pytest.raises(ValueError):
        bands_from_capacity(np.array([]), BandsParams())
