"""Re-evaluate a trained candidate from its exported files (the DVC `evaluate` stage).

What is evaluated is what would be served: the hash-checked bundle, reloaded from text,
must reproduce the raw scores recorded at training time on the population before any
metric is computed. The truth evaluation may use another data set than training (e.g. a world
from a different simulator under the same contract): the population comes from the
feature set given, the test labels from the training run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from exportguard.errors import ExportguardError
from exportguard.scoring.bundle import checked_bundle
from exportguard.scoring.scorer import Scorer
from exportguard.training.baselines import LogisticBaseline, red_flag_count
from exportguard.training.config import Params
from exportguard.training.inputs import FeatureSet
from exportguard.training.pipeline import evaluate_on_truth

log = logging.getLogger(__name__)

#: largest tolerated |raw score reloaded - raw score at training| (text round trip is exact)
REPRODUCE_TOLERANCE = 1e-9


def _read_run_dir(
    run_dir: Path, params: Params
) -> tuple[Any, LogisticBaseline, pd.DataFrame, dict[str, Any]]:
    run_dir = Path(run_dir)
    for name in ("bundle", "logistic.json", "population_scores.parquet", "metrics.json"):
        if not (run_dir / name).exists():
            raise ExportguardError(f"{run_dir / name} is missing (write it with `train --out`)")
    bundle = checked_bundle(run_dir / "bundle", params.policy)
    logistic = LogisticBaseline.from_json(
        json.loads((run_dir / "logistic.json").read_text(encoding="utf-8"))
    )
    scores = pd.read_parquet(run_dir / "population_scores.parquet", columns=["account_id", "raw"])
    trained = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    return bundle, logistic, scores, trained


def evaluate_run_dir(
    run_dir: Path, fs: FeatureSet, params: Params, truth: pd.DataFrame | None
) -> dict[str, Any]:
    """The exported candidate, checked and evaluated; the recipe's backtest from training.

    The candidate is the recipe refitted on every matured label, so the run's test labels
    are inside its training data: the test figures reported are the recipe's backtest
    (latest fold, and the mean over folds), recorded by `train`. What is evaluated here is
    the exported bundle itself, on the population (it must reproduce the training-time
    raw scores) and, with a ground truth, on every never-reviewed account.
    """
    bundle, logistic, recorded, trained = _read_run_dir(run_dir, params)
    scorer = Scorer(bundle)  # the serving path: verified bundle, encoding, booster from text
    pop = fs.population.reset_index(drop=True)
    scored = scorer.score(pop, explain=False)
    p_raw = scored.raw
    same = bundle.metadata.get("data_fingerprint") == fs.fingerprint
    if same:
        expected = pop[["account_id"]].merge(recorded, on="account_id", how="left")["raw"]
        gap = float(np.nanmax(np.abs(p_raw - expected.to_numpy()), initial=0.0))
        if expected.isna().any() or gap > REPRODUCE_TOLERANCE:
            raise ExportguardError(
                f"{run_dir}/bundle does not reproduce the training scores (max difference {gap:.2e})"
            )
    else:
        log.info("evaluating on other data than the model was trained on")
    k = params.bands.review_capacity_per_week
    metrics: dict[str, Any] = {
        "model_version": bundle.version,
        "bundle_sha256": bundle.sha256,
        "test": trained["test"],
        "folds": trained.get("folds"),
        "same_data_as_training": same,
    }
    if truth is not None:
        p_scores = {
            "model": p_raw,
            "logistic": logistic.decision(pop),
            "red_flags": red_flag_count(pop),
        }
        metrics["truth"] = evaluate_on_truth(pop, p_scores, scored.prob, logistic, truth, k, params)
    return metrics
