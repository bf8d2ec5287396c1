"""The LightGBM model: a pure `train_booster` that knows nothing of tracking.

Inputs always go through `model_matrix`, the encoding serving uses, so what is trained is
what is scored. Monotone constraints come from the declared feature list (more
restricted-country traffic or restricted ownership never lowers risk), which keeps the
model defensible and harder to probe. Determinism: `deterministic`, a fixed thread count,
column-wise histograms and one seed for every random choice make the same data, params
and seed give a byte-identical model file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np

from exportguard.features.registry import BY_NAME, FEATURE_NAMES
from exportguard.training.config import TrainParams

log = logging.getLogger(__name__)


def lgb_params(params: TrainParams, names: Sequence[str] = FEATURE_NAMES) -> dict[str, Any]:
    """LightGBM's parameter dict for `params` (objective, regularisation, determinism)."""
    out: dict[str, Any] = {
        "objective": "binary",
        "metric": ["average_precision", "binary_logloss"],
        "first_metric_only": True,
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "max_depth": params.max_depth,
        "min_data_in_leaf": params.min_data_in_leaf,
        "feature_fraction": params.feature_fraction,
        "bagging_fraction": params.bagging_fraction,
        "bagging_freq": params.bagging_freq,
        "lambda_l2": params.lambda_l2,
        "max_bin": params.max_bin,
        "seed": params.seed,
        "num_threads": params.num_threads,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }
    if params.monotone:
        out["monotone_constraints"] = [BY_NAME[n].monotone for n in names]
        out["monotone_constraints_method"] = params.monotone_constraints_method
    return out


def class_weights(y: np.ndarray, w: np.ndarray, mode: str) -> np.ndarray:
    """Sample weights after class-imbalance handling ('balanced': positives weigh as much as negatives)."""
    w = np.asarray(w, dtype=float).copy()
    if mode == "balanced":
        pos, neg = w[y == 1].sum(), w[y == 0].sum()
        if pos > 0:
            w[y == 1] *= neg / pos
    elif mode != "none":
        raise ValueError(f"unknown class_weight {mode!r} (expected 'none' or 'balanced')")
    return w


class SmoothedEarlyStopping:
    """Early stopping on the validation AP averaged over the last `window` iterations.

    AP on a validation window of a hundred-odd labels is noisy: plain early stopping can
    pick a one-tree model because the first tree happened to score best. Smoothing the
    curve and not stopping before `min_rounds` picks the middle of the plateau instead.
    """

    order = 30  # after LightGBM's own evaluation callbacks

    def __init__(self, patience: int, min_rounds: int, window: int) -> None:
        self.patience = patience
        self.min_rounds = min_rounds
        self.window = window
        self.history: list[float] = []
        self.best_score = float("-inf")
        self.best_iteration = 0  # number of trees

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        results = env.evaluation_result_list or []
        score = next((r[2] for r in results if r[1] == "average_precision"), None)
        if score is None:
            raise ValueError("early stopping needs the average_precision validation metric")
        self.history.append(float(score))
        trees = env.iteration + 1
        smoothed = float(np.mean(self.history[-self.window :]))
        if trees >= self.min_rounds and smoothed > self.best_score + 1e-12:
            self.best_score, self.best_iteration = smoothed, trees
        if trees >= self.min_rounds and trees - self.best_iteration >= self.patience:
            raise lgb.callback.EarlyStopException(self.best_iteration - 1, results)


def train_booster(
    x_train: np.ndarray,
    y_train: np.ndarray,
    w_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    params: TrainParams,
    names: Sequence[str] = FEATURE_NAMES,
) -> lgb.Booster:
    """Fit with early stopping on the (later) validation slice; returns the best-iteration model."""
    if x_train.shape[1] != len(names) or x_valid.shape[1] != len(names):
        raise ValueError(f"matrices must have {len(names)} columns in the declared order")
    if len(np.unique(y_train)) < 2 or len(np.unique(y_valid)) < 2:
        raise ValueError("training and validation slices both need positives and negatives")
    cfg = lgb_params(params, names)
    weights = class_weights(y_train, w_train, params.class_weight)
    train_set = lgb.Dataset(
        x_train, y_train, weight=weights, feature_name=list(names), free_raw_data=True
    )
    valid_set = lgb.Dataset(x_valid, y_valid, reference=train_set)
    stopper = SmoothedEarlyStopping(
        params.early_stopping_rounds, params.min_boost_rounds, params.early_stopping_window
    )
    booster = lgb.train(
        cfg,
        train_set,
        num_boost_round=params.num_boost_round,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[stopper],
    )
    best = min(stopper.best_iteration or booster.current_iteration(), booster.current_iteration())
    log.info("trained %d trees (best smoothed validation AP %.4f)", best, stopper.best_score)
    # Round-trip through the text format: the returned model is exactly the file we export.
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def model_text(booster: lgb.Booster) -> str:
    """The exported LightGBM text model."""
    return booster.model_to_string()
