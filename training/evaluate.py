"""Re-evaluate a trained candidate from its exported files (the DVC `evaluate` stage).

What is evaluated is what would be served: the hash-checked bundle, reloaded from text,
must reproduce the raw scores recorded at training time on the holdout before any metric
is computed. The truth evaluation may use another data set than training (e.g. a world
from a different simulator under the same contract): the population comes from the
feature set given, the test labels from the training run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from exportguard.bundle import load_bundle
from exportguard.errors import ExportguardError
from exportguard.features.matrix import model_matrix
from exportguard.features.registry import FEATURE_NAMES
from exportguard.training.baselines import LogisticBaseline, red_flag_count
from exportguard.training.config import Params
from exportguard.training.inputs import FeatureSet
from exportguard.training.pipeline import compare_scorers, evaluate_on_truth

log = logging.getLogger(__name__)

#: largest tolerated |raw score reloaded - raw score at training| (text round trip is exact)
REPRODUCE_TOLERANCE = 1e-9


def _read_run_dir(run_dir: Path) -> tuple[Any, LogisticBaseline, pd.DataFrame]:
    run_dir = Path(run_dir)
    for name in ("bundle", "logistic.json", "holdout.parquet"):
        if not (run_dir / name).exists():
            raise ExportguardError(f"{run_dir / name} is missing (write it with `train --out`)")
    bundle = load_bundle(run_dir / "bundle", expected_features=FEATURE_NAMES)
    logistic = LogisticBaseline.from_json(
        json.loads((run_dir / "logistic.json").read_text(encoding="utf-8"))
    )
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    return bundle, logistic, holdout


def evaluate_run_dir(
    run_dir: Path, fs: FeatureSet, params: Params, truth: pd.DataFrame | None
) -> dict[str, Any]:
    """Metrics of the exported candidate and both baselines (test labels; truth if given)."""
    bundle, logistic, holdout = _read_run_dir(run_dir)
    booster = lgb.Booster(model_str=bundle.model_text)
    raw = booster.predict(model_matrix(holdout, bundle.feature_names), raw_score=True)
    gap = float(np.max(np.abs(raw - holdout["score_model"].to_numpy()), initial=0.0))
    if gap > REPRODUCE_TOLERANCE:
        raise ExportguardError(
            f"{run_dir}/bundle does not reproduce the training scores (max difference {gap:.2e})"
        )
    k = params.bands.review_capacity_per_week
    scores = {
        "model": raw,
        "logistic": logistic.decision(holdout),
        "red_flags": red_flag_count(holdout),
    }
    probs = {"model": bundle.calibration(raw), "logistic": logistic.predict_proba(holdout)}
    typology = holdout["typology"].fillna("none").to_numpy(dtype=object)
    y = holdout["label"].to_numpy(dtype=int)
    metrics: dict[str, Any] = {
        "model_version": bundle.version,
        "bundle_sha256": bundle.sha256,
        "test": compare_scorers(y, scores, probs, k, params, typology),
    }
    if bundle.metadata.get("data_fingerprint") != fs.fingerprint:
        log.info("evaluating on other data than the model was trained on")
    metrics["same_data_as_training"] = bundle.metadata.get("data_fingerprint") == fs.fingerprint
    if truth is not None:
        pop = fs.population.reset_index(drop=True)
        p_raw = booster.predict(model_matrix(pop, bundle.feature_names), raw_score=True)
        p_scores = {
            "model": p_raw,
            "logistic": logistic.decision(pop),
            "red_flags": red_flag_count(pop),
        }
        metrics["truth"] = evaluate_on_truth(
            pop, p_scores, bundle.calibration(p_raw), logistic, truth, k, params
        )
    return metrics
