"""The model: byte-identical when repeated, monotone where declared, balanced on request."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from exportguard.features.matrix import model_matrix
from exportguard.features.registry import FEATURE_NAMES, FEATURES
from exportguard.training.config import TrainParams
from exportguard.training.model import (
    SmoothedEarlyStopping,
    class_weights,
    lgb_params,
    train_booster,
)

from factories import make_feature_table, planted_labels

PARAMS = TrainParams(num_threads=1, num_boost_round=60, early_stopping_rounds=20, seed=3)


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    frame = make_feature_table(1200, seed)
    return model_matrix(frame), planted_labels(frame, seed)


def _fit(params: TrainParams = PARAMS):  # type: ignore[no-untyped-def]
    x, y = _data(0)
    xv, yv = _data(1)
    return train_booster(x, y, np.ones(len(y)), xv, yv, params)


def test_same_data_params_seed_give_a_byte_identical_model() -> None:
    first = _fit().model_to_string()
    second = _fit().model_to_string()
    assert first.encode() == second.encode()
    other_seed = _fit(PARAMS.model_copy(update={"seed": 4})).model_to_string()
    assert other_seed != first  # the seed reaches bagging and feature sampling


def test_monotone_features_never_lower_the_score() -> None:
    booster = _fit()
    x = model_matrix(make_feature_table(300, seed=9))
    base = booster.predict(x, raw_score=True)
    for j, feat in enumerate(FEATURES):
        if feat.monotone != 1:
            continue
        bumped = x.copy()
        bumped[:, j] = np.where(bumped[:, j] < -1e8, 0.0, bumped[:, j]) + 5.0
        assert np.all(booster.predict(bumped, raw_score=True) >= base - 1e-12), feat.name


def test_constraints_follow_the_declared_list() -> None:
    cfg = lgb_params(PARAMS)
    assert cfg["monotone_constraints"] == [f.monotone for f in FEATURES]
    assert cfg["deterministic"] is True and cfg["num_threads"] == 1
    assert "monotone_constraints" not in lgb_params(PARAMS.model_copy(update={"monotone": False}))


def test_balanced_weights_equalise_the_classes() -> None:
    y = np.array([1, 0, 0, 0, 0])
    w = class_weights(y, np.ones(5), "balanced")
    assert w[y == 1].sum() == pytest.approx(w[y == 0].sum())
    assert class_weights(y, np.ones(5), "none").tolist() == [1.0] * 5
    with pytest.raises(ValueError, match="class_weight"):
        class_weights(y, np.ones(5), "other")


def test_refuses_wrong_shapes_and_single_class() -> None:
    x, y = _data(0)
    with pytest.raises(ValueError, match="columns"):
        train_booster(x[:, :3], y, np.ones(len(y)), x, y, PARAMS)
    with pytest.raises(ValueError, match="positives and negatives"):
        train_booster(x, np.zeros(len(y)), np.ones(len(y)), x, y, PARAMS)
    assert len(FEATURE_NAMES) == x.shape[1]


def _feed(stopper: SmoothedEarlyStopping, scores: list[float]) -> int | None:
    """Run the callback over a validation-AP curve; the tree count it stopped at, if any."""
    for i, score in enumerate(scores):
        env = lgb.callback.CallbackEnv(
            model=None,
            params={},
            iteration=i,
            begin_iteration=0,
            end_iteration=len(scores),
            evaluation_result_list=[("valid", "average_precision", score, True)],
        )
        try:
            stopper(env)
        except lgb.callback.EarlyStopException as stop:
            return stop.best_iteration + 1
    return None


def test_early_stopping_ignores_a_lucky_first_tree() -> None:
    # the first tree scores best by chance, later trees climb to a plateau, then decline
    curve = [0.9] + [0.6 + 0.002 * i for i in range(1, 80)] + [0.7 - 0.01 * i for i in range(60)]
    stopper = SmoothedEarlyStopping(patience=20, min_rounds=10, window=5)
    stopped = _feed(stopper, curve)
    assert stopped is not None and 60 <= stopper.best_iteration <= 82
    assert stopped == stopper.best_iteration
    plain = SmoothedEarlyStopping(patience=20, min_rounds=1, window=1)
    _feed(plain, curve)
    assert plain.best_iteration == 1  # what plain early stopping would have kept


def test_min_rounds_must_fit_in_the_budget() -> None:
    with pytest.raises(ValueError, match="min_boost_rounds"):
        TrainParams(num_boost_round=20, min_boost_rounds=50)
