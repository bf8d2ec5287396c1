"""One Scorer for training, the HTTP service and batch rescoring: score, band, exact TreeSHAP.

Path: features in the declared order -> model matrix (shared encoding with training) ->
LightGBM raw score (log-odds) -> isotonic calibration -> band -> exact TreeSHAP
contributions in log-odds (additive to the raw score; equal to LightGBM's
`pred_contrib`) -> top reasons with plain-language sentences.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from exportguard.features.matrix import encode_missing, feature_values
from exportguard.features.registry import BY_NAME
from exportguard.scoring.bundle import Bundle, BundleError, checked_bundle
from exportguard.scoring.reasons import Reason, reason_lists, top_k

log = logging.getLogger(__name__)

#: Below this many rows FastTreeSHAP v1 is used (v2 pays a per-call precomputation).
V2_MIN_ROWS = 2000


def tree_explainer(booster: lgb.Booster, algorithm: str = "v1", n_jobs: int = 1) -> Any:
    """The one SHAP engine: FastTreeSHAP's exact TreeSHAP (v1, or v2 for large batches).

    Chosen by measurement (bench/batch.py, the shipped champion, 2 cores, same rows):
    v2 ~3x LightGBM's `pred_contrib` and shap's TreeExplainer, all equal to 1e-14.
    """
    with warnings.catch_warnings():  # its old modules warn while compiling
        warnings.simplefilter("ignore")
        import fasttreeshap_fixed as fts  # heavy import, only when explaining

    return fts.TreeExplainer(booster, algorithm=algorithm, n_jobs=n_jobs)


def tree_shap(explainer: Any, matrix: np.ndarray) -> tuple[np.ndarray, float]:
    """(rows, features) contributions in log-odds and the base value, from `tree_explainer`."""
    phi = np.asarray(explainer.shap_values(matrix, check_additivity=False), dtype=np.float64)
    if phi.ndim == 3:  # some versions return one array per class
        phi = phi[-1]
    return phi, float(np.ravel(explainer.expected_value)[-1])


@dataclass(frozen=True)
class ScoreBatch:
    """Scores of n rows; `contributions` is (n, n_features) log-odds, `base_value` the expectation."""

    feature_names: tuple[str, ...]
    values: np.ndarray  # (n, F) the feature values as given (NaN = missing)
    raw: np.ndarray
    prob: np.ndarray
    band: np.ndarray
    contributions: np.ndarray | None
    base_value: float

    def __len__(self) -> int:
        return len(self.raw)

    def reasons(self, i: int, k: int = 5) -> list[Reason]:
        """Top-k features that raised row i's risk most (positive contributions, largest first)."""
        i = range(len(self))[i]  # IndexError when out of range; negative counts from the end
        return self._top_reasons(slice(i, i + 1), k)[0]

    def top_reasons(self, k: int = 5) -> list[list[Reason]]:
        """`reasons(i, k)` of every row i, sorted for all rows at once (the service's path)."""
        return self._top_reasons(slice(None), k)

    def top_reason_arrays(
        self, k: int, rows: slice = slice(None)
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The one top-k reason selection (vectorised): what HTTP reasons and batch columns show.

        Returns (order, contribution, keep, value), each (rows, min(k, features)): feature
        indices by falling contribution (ties in declared order), their contributions, whether
        each is a reason (a list stops at the first non-positive contribution), their values.
        """
        if self.contributions is None:
            raise ValueError("scores were computed without explanations")
        return top_k(self.contributions[rows], self.values[rows], k)

    def _top_reasons(self, rows: slice, k: int) -> list[list[Reason]]:
        return reason_lists(self.feature_names, *self.top_reason_arrays(k, rows))

    def family_contributions(self, i: int) -> dict[str, float]:
        """Contributions summed per feature family (log-odds)."""
        if self.contributions is None:
            raise ValueError("scores were computed without explanations")
        sums: dict[str, float] = {}
        for j, name in enumerate(self.feature_names):
            fam = BY_NAME[name].family
            sums[fam] = sums.get(fam, 0.0) + float(self.contributions[i, j])
        return sums


class Scorer:
    """Loads a verified bundle once; `score` is thread-safe and deterministic."""

    def __init__(self, bundle: Bundle, n_jobs: int = 1) -> None:
        self.bundle = bundle
        self.n_jobs = n_jobs
        self.booster = lgb.Booster(model_str=bundle.model_text)
        if tuple(self.booster.feature_name()) != bundle.feature_names:
            raise BundleError(f"{bundle.path}: model.txt feature names differ from features.json")
        self._explainers: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_path(cls, path: str | Path, n_jobs: int = 1) -> Scorer:
        """A Scorer of the bundle at `path`, verified and checked against this code's feature spec."""
        return cls(checked_bundle(Path(path)), n_jobs=n_jobs)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.bundle.feature_names

    def _explainer(self, algorithm: str) -> Any:
        with self._lock:
            if algorithm not in self._explainers:
                self._explainers[algorithm] = tree_explainer(self.booster, algorithm, self.n_jobs)
            return self._explainers[algorithm]

    def contributions(self, matrix: np.ndarray) -> tuple[np.ndarray, float]:
        """Exact TreeSHAP (log-odds) for an encoded matrix, and the base value."""
        algorithm = "v2" if len(matrix) >= V2_MIN_ROWS else "v1"
        return tree_shap(self._explainer(algorithm), matrix)

    def score(self, features: pd.DataFrame, explain: bool = True) -> ScoreBatch:
        """Score a feature table holding (at least) the declared feature columns."""
        return self.score_values(feature_values(features, self.feature_names), explain=explain)

    def score_values(self, values: np.ndarray, explain: bool = True) -> ScoreBatch:
        """Score a float64 (rows, features) array in the declared feature order, NaN = missing.

        The path the HTTP service takes (no DataFrame for a handful of rows); `score` is
        this plus the column selection.
        """
        values = np.asarray(values, dtype=np.float64)
        matrix = encode_missing(values, self.feature_names)
        if len(matrix) == 0:
            empty = np.zeros(0)
            return ScoreBatch(
                self.feature_names,
                values,
                empty,
                empty,
                empty.astype(str),
                np.zeros((0, len(self.feature_names))) if explain else None,
                0.0,
            )
        raw = np.asarray(self.booster.predict(matrix, raw_score=True, num_threads=self.n_jobs))
        prob = self.bundle.calibration(raw)
        band = self.bundle.bands.assign(prob)
        contrib, base = (None, float("nan"))
        if explain:
            contrib, base = self.contributions(matrix)
        return ScoreBatch(self.feature_names, values, raw, prob, band, contrib, base)

    def raw_scores(self, features: pd.DataFrame) -> np.ndarray:
        """Raw scores (log-odds) of a feature table, no explanations: what training evaluates."""
        return self.score(features, explain=False).raw

    def additivity_error(self, features: pd.DataFrame) -> float:
        """Largest gap, over the rows, of the explanations every reason relies on.

        Two checks: the served TreeSHAP contributions plus the base value add up to the raw
        score, and they equal LightGBM's own `pred_contrib` (an independent exact TreeSHAP).
        Should be ~1e-12; training's promotion gate and the service's warm-up both use it.
        """
        batch = self.score(features, explain=True)
        if len(batch) == 0:
            return 0.0
        assert batch.contributions is not None
        gap = float(np.max(np.abs(batch.contributions.sum(axis=1) + batch.base_value - batch.raw)))
        matrix = encode_missing(batch.values, self.feature_names)
        reference = np.asarray(
            self.booster.predict(matrix, pred_contrib=True, num_threads=self.n_jobs)
        )
        return max(gap, float(np.max(np.abs(batch.contributions - reference[:, :-1]))))
