"""The model matrix: the one encoding of a feature table that training and scoring share.

Missing values (NaN: an optional table absent, no traffic in a window) are encoded as a
fixed sentinel far below every real value, so the trees see "missing" as its own lowest
bin. Why not LightGBM's native NaN handling: FastTreeSHAP's v2 algorithm, which batch
rescoring needs for speed, mis-routes NaN and breaks SHAP additivity; with no NaN in the
matrix, LightGBM's `pred_contrib`, shap and FastTreeSHAP v1/v2 agree to 1e-12. A side
effect, stated for compliance: under a +1 monotone constraint a missing value never
scores riskier than the feature's smallest observed value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from exportguard.features.registry import FEATURE_NAMES

MISSING = -1.0e9


def encode_missing(values: np.ndarray, names: Sequence[str] = FEATURE_NAMES) -> np.ndarray:
    """The model matrix of a float64 (rows, len(names)) array: NaN -> MISSING, infinities refused."""
    if values.ndim != 2 or values.shape[1] != len(names):
        raise ValueError(f"expected a (rows, {len(names)}) array, got shape {values.shape}")
    missing = np.isnan(values)
    if not np.isfinite(values[~missing]).all():
        cols = [names[j] for j in np.where(np.isinf(values).any(axis=0))[0]]
        raise ValueError(f"infinite values in feature(s) {cols[:8]}")
    return np.where(missing, MISSING, values)


def feature_values(frame: pd.DataFrame, names: Sequence[str] = FEATURE_NAMES) -> np.ndarray:
    """Float64 (rows, len(names)) array of `names` in order, missing as NaN."""
    absent = [n for n in names if n not in frame.columns]
    if absent:
        raise ValueError(f"feature table lacks {len(absent)} declared feature(s): {absent[:8]}")
    return frame.loc[:, list(names)].to_numpy(dtype=np.float64, na_value=np.nan)


def model_matrix(frame: pd.DataFrame, names: Sequence[str] = FEATURE_NAMES) -> np.ndarray:
    """Float64 matrix of `names` in order, NaN encoded as MISSING; infinities are refused."""
    return encode_missing(feature_values(frame, names), names)
