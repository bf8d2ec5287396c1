"""Training-time reference distributions, exported with the model for drift reports.

For every feature: quantile bin edges of its non-missing values in the scored population
at training time, the share of values in each bin, and the share missing; the same for the
calibrated score. Bin i holds values v with edges[i-1] <= v < edges[i] (outer bins open),
i.e. `np.searchsorted(edges, v, side="right")`, so a later population binned the same way
gives a population stability index against these proportions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from exportguard.features.registry import FEATURE_NAMES


def distribution(values: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Quantile edges (deduplicated), bin proportions and missing share of one column."""
    values = np.asarray(values, dtype=float)
    present = values[~np.isnan(values)]
    out: dict[str, Any] = {
        "n": int(len(values)),
        "missing": float(1.0 - len(present) / len(values)) if len(values) else 0.0,
    }
    if len(present) == 0:
        out.update(edges=[], proportions=[])
        return out
    qs = np.quantile(present, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    edges = np.unique(qs)
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    out["edges"] = [float(e) for e in edges]
    out["proportions"] = [float(c) for c in counts / counts.sum()]
    return out


def reference_distributions(
    features: pd.DataFrame,
    score: np.ndarray,
    as_of: pd.Timestamp,
    bins: int = 10,
    names: Sequence[str] = FEATURE_NAMES,
) -> dict[str, Any]:
    """The reference.json payload for a scored population."""
    return {
        "as_of": pd.Timestamp(as_of).isoformat(),
        "n_accounts": int(len(features)),
        "bins": bins,
        "binning": "np.searchsorted(edges, value, side='right'); NaN counted in 'missing'",
        "features": {
            n: distribution(features[n].to_numpy(dtype=float, na_value=np.nan), bins) for n in names
        },
        "score": distribution(np.asarray(score, dtype=float), bins),
    }
