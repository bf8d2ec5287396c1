"""A recipe (features + parameters), its rolling-origin backtest, and its refit on every label.

Evaluation and deployment are kept apart on purpose. The **backtest** fits the recipe
once per time fold, each fold only on examples labelled before its training cutoff, and
scores it on the fold's later test window: that measures how the recipe does on labels it
could not have seen. The **refit** is the model that ships: the same recipe fitted on
every example matured by the as-of time (labelled at least `split.gap_days` before it, the
label delay the folds also leave), without early stopping on its own training data. Its
number of trees comes from the backtest: the median of the folds' early-stopped
iterations, scaled by the square root of how many more examples the refit has than the
median fold (more data supports more trees, less than proportionally at a fixed learning
rate), within [train.min_boost_rounds, train.num_boost_round].
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from exportguard.digest import json_digest
from exportguard.features.matrix import model_matrix
from exportguard.features.registry import BY_NAME, FEATURE_NAMES
from exportguard.training.config import Params, TrainParams
from exportguard.training.dataset import LABELLED
from exportguard.training.metrics import score_metrics
from exportguard.training.model import class_weights, lgb_params, train_booster
from exportguard.training.split import Fold, _train_rows, time_folds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """What produces a model: LightGBM parameters and the feature columns, in order."""

    train: TrainParams
    features: tuple[str, ...] = FEATURE_NAMES

    def to_json(self) -> dict[str, Any]:
        return {"train_params": self.train.model_dump(mode="json"), "features": list(self.features)}

    @property
    def digest(self) -> str:
        spec = [
            (n, BY_NAME[n].family, BY_NAME[n].monotone) if n in BY_NAME else (n,)
            for n in self.features
        ]
        payload = {"train_params": self.train.model_dump(mode="json"), "features": spec}
        return json_digest(payload)[:16]


@dataclass
class Backtest:
    """Per-fold models and metrics, and the out-of-fold (test-window) raw scores."""

    folds: list[Fold]
    models: list[lgb.Booster]
    per_fold: list[dict[str, Any]]
    oof_rows: np.ndarray  # example row positions, fold by fold (a row may recur across folds)
    oof_raw: np.ndarray
    best_iterations: list[int] = field(default_factory=list)

    def mean(self, metric: str) -> float:
        return float(np.nanmean([f[metric] for f in self.per_fold]))

    def sd(self, metric: str) -> float:
        return float(np.nanstd([f[metric] for f in self.per_fold]))


def backtest(
    recipe: Recipe, examples: pd.DataFrame, as_of: pd.Timestamp, params: Params
) -> Backtest:
    """Fit the recipe on every time fold's training rows; score each fold's test window."""
    folds = time_folds(examples, as_of, params.split)
    x = model_matrix(examples, recipe.features)
    y = examples["label"].to_numpy()
    w = examples["weight"].to_numpy()
    k = params.bands.review_capacity_per_week
    models, per_fold, rows, raws, best = [], [], [], [], []
    for fold in folds:
        booster = train_booster(
            x[fold.train], y[fold.train], w[fold.train], x[fold.valid], y[fold.valid],
            recipe.train, recipe.features,
        )  # fmt: skip
        raw = np.asarray(booster.predict(x[fold.test], raw_score=True))
        m = score_metrics(y[fold.test], raw, k, top_fraction=params.evaluate.top_fraction)
        per_fold.append({"fold": fold.index, "ap": m["ap"], "recall_at_k": m["recall_at_k"]})
        models.append(booster)
        rows.append(fold.test)
        raws.append(raw)
        best.append(booster.current_iteration())
    return Backtest(folds, models, per_fold, np.concatenate(rows), np.concatenate(raws), best)


def matured_rows(examples: pd.DataFrame, as_of: pd.Timestamp, params: Params) -> np.ndarray:
    """Every example usable at the as-of time: labelled at least gap_days before it."""
    return _train_rows(examples, as_of - pd.Timedelta(days=params.split.gap_days))


def refit_trees(bt: Backtest, n_refit: int, train: TrainParams) -> int:
    """The refit's tree count: median fold best iteration x sqrt(data ratio), clipped."""
    median_best = float(np.median(bt.best_iterations))
    median_train = float(np.median([len(f.train) for f in bt.folds]))
    scale = np.sqrt(max(1.0, n_refit / max(median_train, 1.0)))
    trees = int(round(median_best * scale))
    return int(np.clip(trees, train.min_boost_rounds, train.num_boost_round))


def refit(recipe: Recipe, examples: pd.DataFrame, rows: np.ndarray, trees: int) -> lgb.Booster:
    """The recipe fitted on `rows` with a fixed number of trees (no early stopping)."""
    x = model_matrix(examples.iloc[rows], recipe.features)
    y = examples["label"].to_numpy()[rows]
    w = class_weights(y, examples["weight"].to_numpy()[rows], recipe.train.class_weight)
    cfg = lgb_params(recipe.train, recipe.features)
    cfg["metric"] = "None"
    data = lgb.Dataset(x, y, weight=w, feature_name=list(recipe.features), free_raw_data=True)
    booster = lgb.train(cfg, data, num_boost_round=trees)
    log.info("refitted the recipe on %d examples with %d trees", len(rows), trees)
    return lgb.Booster(model_str=booster.model_to_string())


def trained_through(examples: pd.DataFrame, rows: np.ndarray) -> pd.Timestamp:
    """The latest label time among the labelled examples a model learned from."""
    sub = examples.iloc[rows]
    return pd.Timestamp(sub.loc[sub["kind"] == LABELLED, "as_of"].max())
