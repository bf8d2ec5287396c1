"""The training run as one pure function: examples in, model + evaluation out.

`run_training` fits the model and both baselines on every time fold, keeps the latest
fold's model as the candidate, calibrates it on that fold's validation slice, derives the
bands from the weekly review capacity over the population at the as-of time, and
evaluates on the later test labels and (given a ground truth) on every account never
reviewed before the as-of time. It does no I/O and no tracking.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from exportguard.bundle import Bands, Calibration
from exportguard.errors import ExportguardError
from exportguard.features.matrix import model_matrix
from exportguard.features.registry import FEATURE_NAMES
from exportguard.training.baselines import LogisticBaseline, fit_logistic, red_flag_count
from exportguard.training.calibrate import bands_from_capacity, calibrate
from exportguard.training.config import Params
from exportguard.training.dataset import PRESUMED
from exportguard.training.metrics import score_metrics
from exportguard.training.model import class_weights, train_booster
from exportguard.training.reference import reference_distributions
from exportguard.training.split import Fold, time_folds

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


def scorer_outputs(
    booster: lgb.Booster, logistic: LogisticBaseline, frame: pd.DataFrame
) -> dict[str, np.ndarray]:
    """Raw model score, logistic decision value and red-flag count for each row."""
    return {
        "model": booster.predict(model_matrix(frame), raw_score=True),
        "logistic": logistic.decision(frame),
        "red_flags": red_flag_count(frame),
    }


def _fit_fold(
    examples: pd.DataFrame, x: np.ndarray, fold: Fold, params: Params
) -> tuple[lgb.Booster, LogisticBaseline]:
    y = examples["label"].to_numpy()
    w = examples["weight"].to_numpy()
    booster = train_booster(
        x[fold.train], y[fold.train], w[fold.train], x[fold.valid], y[fold.valid], params.train
    )
    train_frame = examples.iloc[fold.train]
    logistic = fit_logistic(
        train_frame,
        y[fold.train],
        class_weights(y[fold.train], w[fold.train], params.train.class_weight),
        c=params.evaluate.logreg_c,
    )
    return booster, logistic


def compare_scorers(
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    probs: dict[str, np.ndarray | None],
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


def run_training(
    examples: pd.DataFrame,
    population: pd.DataFrame,
    as_of: pd.Timestamp,
    params: Params,
    truth: pd.DataFrame | None = None,
) -> TrainingResult:
    """Fit, calibrate, band and evaluate; `examples` and `population` carry FEATURE_NAMES."""
    examples = use_presumed_negatives(examples, params)
    folds = time_folds(examples, as_of, params.split)
    x = model_matrix(examples)
    y = examples["label"].to_numpy()
    k = params.bands.review_capacity_per_week

    per_fold: list[dict[str, Any]] = []
    fitted: tuple[lgb.Booster, LogisticBaseline] | None = None
    for fold in folds:
        booster_i, logistic_i = _fit_fold(examples, x, fold, params)
        test = examples.iloc[fold.test]
        scores = scorer_outputs(booster_i, logistic_i, test)
        row = compare_scorers(y[fold.test], scores, {}, k, params, None)
        row["fold"] = fold.index
        row["trees"] = booster_i.current_iteration()
        per_fold.append(row)
        if fold.index == 0:
            fitted = (booster_i, logistic_i)
    assert fitted is not None
    booster, logistic = fitted
    latest = folds[0]

    if len(latest.valid) < params.calibration.min_examples:
        raise ExportguardError(
            f"the validation window has {len(latest.valid)} labelled accounts, fewer than "
            f"calibration.min_examples={params.calibration.min_examples}; widen split.valid_days"
        )
    valid_raw = booster.predict(x[latest.valid], raw_score=True)
    pop = population.reset_index(drop=True)
    p_scores = scorer_outputs(booster, logistic, pop)
    calibration = calibrate(
        params.calibration.method, valid_raw, y[latest.valid], p_scores["model"]
    )

    holdout = examples.iloc[latest.test].reset_index(drop=True)
    h_scores = scorer_outputs(booster, logistic, holdout)
    h_probs = {"model": calibration(h_scores["model"]), "logistic": logistic.predict_proba(holdout)}
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
        },
        "trees": booster.current_iteration(),
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
