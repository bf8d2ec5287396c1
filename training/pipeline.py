"""The training run as one pure function: examples in, model + evaluation out.

`run_training` backtests the recipe (the model and both baselines on every time fold,
scored on each fold's later test window), refits it on every matured label (the model
that ships; `training.recipe`), calibrates on the folds' out-of-fold test predictions,
derives the bands from the weekly review capacity over the population at the as-of time,
and (given a ground truth) evaluates the refit and the latest fold's model on every
account never reviewed before the as-of time. It does no I/O and no tracking.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from exportguard.errors import ExportguardError
from exportguard.features.matrix import model_matrix
from exportguard.features.registry import FEATURE_NAMES
from exportguard.monitoring.reference import reference_distributions
from exportguard.scoring.calibration import Bands, Calibration
from exportguard.training.baselines import LogisticBaseline, fit_logistic, red_flag_count
from exportguard.training.calibrate import bands_from_capacity, calibrate
from exportguard.training.config import Params
from exportguard.training.dataset import PRESUMED
from exportguard.training.metrics import score_metrics
from exportguard.training.model import class_weights
from exportguard.training.recipe import (
    Backtest,
    Recipe,
    backtest,
    matured_rows,
    refit,
    refit_trees,
    trained_through,
)
from exportguard.training.split import Fold

log = logging.getLogger(__name__)

SCORERS = ("model", "logistic", "red_flags")


@dataclass
class TrainingResult:
    """Everything a run produces; the CLI logs it, exports it and prints it."""

    booster: lgb.Booster
    calibration: Calibration
    bands: Bands
    logistic: LogisticBaseline
    as_of: pd.Timestamp
    folds: list[Fold]
    metrics: dict[str, Any]
    holdout: pd.DataFrame  # the latest fold's test examples with features and all scores
    population: pd.DataFrame  # account_id, reviewed_before, raw, prob, band (+ truth)
    reference: dict[str, Any]
    importance: pd.DataFrame = field(default_factory=pd.DataFrame)
    fold_booster: lgb.Booster | None = None  # the latest backtest fold's model (not deployed)
    recipe: Recipe | None = None
    trained_through: pd.Timestamp | None = None  # latest label time the deployed model saw


def scorer_outputs(
    booster: lgb.Booster, logistic: LogisticBaseline, frame: pd.DataFrame
) -> dict[str, np.ndarray]:
    """Raw model score, logistic decision value and red-flag count for each row."""
    return {
        "model": np.asarray(booster.predict(model_matrix(frame), raw_score=True)),
        "logistic": logistic.decision(frame),
        "red_flags": red_flag_count(frame),
    }


def compare_scorers(
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    probs: Mapping[str, np.ndarray | None],
    k: int,
    params: Params,
    group: np.ndarray | None,
) -> dict[str, Any]:
    """score_metrics for the model and both baselines on the same rows."""
    return {
        name: score_metrics(
            y,
            scores[name],
            k,
            prob=probs.get(name),
            top_fraction=params.evaluate.top_fraction,
            ece_bins=params.evaluate.ece_bins,
            group=group,
        )
        for name in SCORERS
    }


def _fold_summary(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n_folds": len(per_fold), "per_fold": per_fold}
    for name in SCORERS:
        for metric in ("ap", "recall_at_k"):
            vals = np.array([f[name][metric] for f in per_fold], dtype=float)
            out[f"{name}_{metric}_mean"] = float(np.nanmean(vals))
            out[f"{name}_{metric}_sd"] = float(np.nanstd(vals))
    return out


def use_presumed_negatives(examples: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Apply `examples.unreviewed`: drop presumed negatives, or give them their weight."""
    un = params.examples.unreviewed
    presumed = (examples["kind"] == PRESUMED).to_numpy()
    if not un.enabled:
        return examples.loc[~presumed].reset_index(drop=True)
    out = examples.reset_index(drop=True).copy()
    out.loc[presumed, "weight"] = un.weight
    return out


def _fold_baselines(
    examples: pd.DataFrame, bt: Backtest, params: Params
) -> tuple[list[dict[str, Any]], LogisticBaseline]:
    """Per-fold comparison of the recipe's fold models with both baselines on the test window."""
    y = examples["label"].to_numpy()
    w = examples["weight"].to_numpy()
    k = params.bands.review_capacity_per_week
    per_fold, latest = [], None
    for fold, booster_i in zip(bt.folds, bt.models, strict=True):
        logistic_i = _fit_logistic(examples, y, w, fold.train, params)
        scores = scorer_outputs(booster_i, logistic_i, examples.iloc[fold.test])
        row = compare_scorers(y[fold.test], scores, {}, k, params, None)
        row["fold"] = fold.index
        row["trees"] = booster_i.current_iteration()
        per_fold.append(row)
        if fold.index == 0:
            latest = logistic_i
    assert latest is not None
    return per_fold, latest


def _fit_logistic(
    examples: pd.DataFrame, y: np.ndarray, w: np.ndarray, rows: np.ndarray, params: Params
) -> LogisticBaseline:
    return fit_logistic(
        examples.iloc[rows],
        y[rows],
        class_weights(y[rows], w[rows], params.train.class_weight),
        c=params.evaluate.logreg_c,
    )


def run_training(
    examples: pd.DataFrame,
    population: pd.DataFrame,
    as_of: pd.Timestamp,
    params: Params,
    truth: pd.DataFrame | None = None,
) -> TrainingResult:
    """Backtest the recipe, refit it on every matured label, calibrate out of fold, band, evaluate.

    `examples` and `population` carry FEATURE_NAMES. See `training.recipe` for why the
    deployed model is the refit and not a fold model.
    """
    examples = use_presumed_negatives(examples, params)
    recipe = Recipe(params.train)
    bt = backtest(recipe, examples, as_of, params)
    folds = bt.folds
    y = examples["label"].to_numpy()
    w = examples["weight"].to_numpy()
    k = params.bands.review_capacity_per_week
    per_fold, fold_logistic = _fold_baselines(examples, bt, params)
    fold_model, latest = bt.models[0], folds[0]

    rows = matured_rows(examples, as_of, params)
    trees = refit_trees(bt, len(rows), params.train)
    booster = refit(recipe, examples, rows, trees)
    logistic = _fit_logistic(examples, y, w, rows, params)
    through = trained_through(examples, rows)

    oof_y = y[bt.oof_rows]
    if len(oof_y) < params.calibration.min_examples:
        raise ExportguardError(
            f"the backtest's test windows hold {len(oof_y)} labelled accounts, fewer than "
            f"calibration.min_examples={params.calibration.min_examples}; widen split.test_days"
        )
    pop = population.reset_index(drop=True)
    p_scores = scorer_outputs(booster, logistic, pop)
    calibration = calibrate(params.calibration.method, bt.oof_raw, oof_y, p_scores["model"])
    oof_fit = score_metrics(oof_y, bt.oof_raw, k, prob=calibration(bt.oof_raw),
                            ece_bins=params.evaluate.ece_bins)  # fmt: skip

    holdout = examples.iloc[latest.test].reset_index(drop=True)
    h_scores = scorer_outputs(fold_model, fold_logistic, holdout)
    h_probs = {
        "model": calibration(h_scores["model"]),
        "logistic": fold_logistic.predict_proba(holdout),
    }
    for name in SCORERS:
        holdout[f"score_{name}"] = h_scores[name]
    holdout["prob_model"] = h_probs["model"]
    typology = holdout["typology"].fillna("none").to_numpy(dtype=object)
    metrics: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "examples": {
            "labelled": int((examples["kind"] == "label").sum()),
            "presumed_negative": int((examples["kind"] == PRESUMED).sum()),
            "train": len(latest.train),
            "valid": len(latest.valid),
            "test": len(latest.test),
            "train_end": latest.train_end.isoformat(),
            "test_start": latest.test_start.isoformat(),
            "refit": len(rows),
        },
        "trees": booster.current_iteration(),
        "refit": {
            "trees": trees,
            "examples": len(rows),
            "trained_through": through.isoformat(),
            "fold_best_iterations": bt.best_iterations,
            "recipe": recipe.digest,
        },
        "calibration": {
            "method": params.calibration.method,
            "fitted_on": "out-of-fold backtest predictions (every fold's test window)",
            "n": len(oof_y),
            "positives": int(oof_y.sum()),
            "ece_out_of_fold": oof_fit.get("ece"),
        },
        "test": compare_scorers(y[latest.test], h_scores, h_probs, k, params, typology),
        "folds": _fold_summary(per_fold),
    }

    p_prob = calibration(p_scores["model"])
    unreviewed = ~pop["reviewed_before"].to_numpy(dtype=bool)
    bands = bands_from_capacity(p_prob[unreviewed], params.bands)
    population_out = pop.loc[:, ["account_id", "reviewed_before"]].assign(
        raw=p_scores["model"],
        prob=p_prob,
        band=bands.assign(p_prob),
        score_logistic=p_scores["logistic"],
        score_red_flags=p_scores["red_flags"],
    )
    metrics["bands"] = {
        "high": bands.high,
        "review": bands.review,
        "capacity_per_week": k,
        "unreviewed_in_high": int((population_out.loc[unreviewed, "band"] == "high").sum()),
        "unreviewed_in_review_or_high": int(
            (population_out.loc[unreviewed, "band"] != "low").sum()
        ),
    }
    if truth is not None:
        metrics["truth"] = evaluate_on_truth(pop, p_scores, p_prob, logistic, truth, k, params)
        f_scores = scorer_outputs(fold_model, fold_logistic, pop)
        metrics["truth_fold_model"] = evaluate_on_truth(
            pop, f_scores, calibration(f_scores["model"]), fold_logistic, truth, k, params
        )["model"]
        population_out = population_out.merge(
            truth.loc[:, ["account_id", "is_circumvention", "typology"]],
            on="account_id",
            how="left",
        )

    reference = reference_distributions(pop.loc[unreviewed], p_prob[unreviewed], as_of)
    gain = booster.feature_importance(importance_type="gain")
    importance = pd.DataFrame(
        {"feature": FEATURE_NAMES, "gain": gain, "splits": booster.feature_importance()}
    ).sort_values("gain", ascending=False, ignore_index=True)
    return TrainingResult(
        booster=booster,
        calibration=calibration,
        bands=bands,
        logistic=logistic,
        as_of=as_of,
        folds=folds,
        metrics=metrics,
        holdout=holdout,
        population=population_out,
        reference=reference,
        importance=importance,
        fold_booster=fold_model,
        recipe=recipe,
        trained_through=through,
    )


def evaluate_on_truth(
    population: pd.DataFrame,
    scores: dict[str, np.ndarray],
    prob: np.ndarray,
    logistic: LogisticBaseline,
    truth: pd.DataFrame,
    k: int,
    params: Params,
) -> dict[str, Any]:
    """Metrics against the ground truth over accounts never reviewed before the as-of time."""
    need = {"account_id", "is_circumvention"}
    if not need <= set(truth.columns):
        raise ValueError(f"truth file lacks column(s) {sorted(need - set(truth.columns))}")
    joined = population.loc[:, ["account_id", "reviewed_before"]].merge(
        truth, on="account_id", how="left", validate="one_to_one"
    )
    if joined["is_circumvention"].isna().any():
        n = int(joined["is_circumvention"].isna().sum())
        raise ValueError(f"truth file has no row for {n} account(s) of the data")
    keep = ~joined["reviewed_before"].to_numpy(dtype=bool)
    y = joined["is_circumvention"].to_numpy()[keep].astype(int)
    typ = joined.get("typology", pd.Series("none", index=joined.index))
    group = typ.fillna("none").astype(str).to_numpy(dtype=object)[keep]
    sub = {name: s[keep] for name, s in scores.items()}
    probs = {
        "model": prob[keep],
        "logistic": logistic.predict_proba(population.loc[keep]),
    }
    return compare_scorers(y, sub, probs, k, params, group)
