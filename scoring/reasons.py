"""Reasons: the top-k features that raised a score, selected once and vectorised.

`top_k` is the one selection; `reason_lists` turns it into the HTTP service's `Reason`
objects, and batch rescoring writes the same arrays as flat columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from exportguard.features.registry import BY_NAME, Feature


@dataclass(frozen=True)
class Reason:
    feature: str
    family: str
    value: float | None
    contribution: float
    sentence: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "family": self.family,
            "value": self.value,
            "contribution": self.contribution,
            "sentence": self.sentence,
        }


def top_k(
    contributions: np.ndarray, values: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The top-k reason selection over (rows, features) contributions and values.

    Returns (order, contribution, keep, value), each (rows, min(k, features)): feature
    indices by falling contribution (ties in declared order), their contributions, whether
    each is a reason (a list stops at the first non-positive contribution), their values.
    """
    k_eff = min(k, contributions.shape[1])
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :k_eff]
    top = np.take_along_axis(contributions, order, axis=1)
    keep = np.cumprod(top > 0, axis=1).astype(bool)
    picked = np.take_along_axis(values, order, axis=1)
    return order, top, keep, picked


def reason_lists(
    feature_names: tuple[str, ...],
    order: np.ndarray,
    top: np.ndarray,
    keep: np.ndarray,
    values: np.ndarray,
) -> list[list[Reason]]:
    """`top_k`'s arrays as one list of `Reason`s per row, each with its sentence."""
    feats: list[Feature] = [BY_NAME[name] for name in feature_names]
    out = []
    for cols, contribs, kept, vals in zip(
        order.tolist(), top.tolist(), keep.tolist(), values.tolist(), strict=True
    ):
        reasons = []
        for j, c, ok, v in zip(cols, contribs, kept, vals, strict=True):
            if not ok:
                break
            feat = feats[j]
            value = None if v != v else v  # v != v only for NaN (missing)
            reasons.append(Reason(feat.name, feat.family, value, c, feat.describe(value)))
        out.append(reasons)
    return out
