"""Deterministic test data made in the test: feature tables and tiny model bundles."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from exportguard.features.matrix import model_matrix
from exportguard.features.policy import Policy
from exportguard.features.registry import FEATURE_NAMES, FEATURES
from exportguard.scoring.bundle import write_bundle
from exportguard.scoring.calibration import Bands, Calibration


def make_feature_table(n: int, seed: int = 0) -> pd.DataFrame:
    """Random feature rows in plausible ranges with ~20% missing values and a planted signal."""
    rs = np.random.RandomState(seed)
    data = {}
    for f in FEATURES:
        if f.fmt in ("share",):
            col = rs.beta(0.5, 4.0, n)
        elif f.fmt == "bool":
            col = (rs.rand(n) < 0.2).astype(float)
        elif f.fmt in ("int", "days"):
            col = np.floor(rs.exponential(20.0, n))
        else:
            col = rs.normal(0.0, 1.0, n)
        col[rs.rand(n) < 0.2] = np.nan
        data[f.name] = col
    frame = pd.DataFrame(data, columns=list(FEATURE_NAMES))
    frame.insert(0, "account_id", [f"acc_{seed}_{i:06d}" for i in range(n)])
    return frame


def planted_labels(frame: pd.DataFrame, seed: int = 0) -> np.ndarray:
    rs = np.random.RandomState(seed + 1)
    signal = (
        3.0 * frame["restricted_traffic_share_30d"].fillna(0)
        + 2.0 * frame["restricted_ownership_effective"].fillna(0)
        + 0.5 * frame["vpn_tor_traffic_share_30d"].fillna(0)
    )
    return (signal + rs.normal(0, 0.5, len(frame)) > 1.2).astype(int).to_numpy()


def build_bundle(
    out: Path, n: int = 2000, seed: int = 0, rounds: int = 40, num_leaves: int = 15
) -> Path:
    frame = make_feature_table(n, seed)
    y = planted_labels(frame, seed)
    X = model_matrix(frame)
    params = {
        "objective": "binary",
        "num_leaves": num_leaves,
        "learning_rate": 0.1,
        "verbose": -1,
        "seed": seed,
        "deterministic": True,
        "num_threads": 1,
        "monotone_constraints": [f.monotone for f in FEATURES],
    }
    booster = lgb.train(params, lgb.Dataset(X, y, feature_name=list(FEATURE_NAMES)), rounds)
    raw = booster.predict(X, raw_score=True)
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    cal = Calibration(tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_)))
    return write_bundle(
        out,
        model_text=booster.model_to_string(),
        calibration=cal,
        bands=Bands(high=0.8, review=0.3),
        features=[
            {"name": f.name, "family": f.family, "doc": f.doc, "monotone": f.monotone}
            for f in FEATURES
        ],
        reference={},
        metadata={"model_name": "exportguard-test", "model_version": "1", "metrics": {"ap": 0.5}},
        policy=Policy(),
    )
