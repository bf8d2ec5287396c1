"""Metrics that match the analysts' job: ranking at the review budget first.

Average precision is primary; precision@k and recall@k use k = the review capacity. Top-k
metrics count ties fairly: where several accounts share the score at the k-th place, each
tied account counts with the share of the tie that fits (the expectation under a random
tie-break), so a coarse score such as a red-flag count is neither flattered nor punished
by row order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


def expected_hits_at_k(y: np.ndarray, score: np.ndarray, k: int) -> float:
    """Expected number of positives among the top k, ties at the boundary shared."""
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    n = len(y)
    if k <= 0 or n == 0:
        return 0.0
    if k >= n:
        return float(y.sum())
    threshold = np.sort(score)[::-1][k - 1]
    above = score > threshold
    tied = score == threshold
    room = k - int(above.sum())
    return float(y[above].sum() + room * y[tied].mean())


def precision_at_k(y: np.ndarray, score: np.ndarray, k: int) -> float:
    k = min(k, len(y))
    return expected_hits_at_k(y, score, k) / k if k > 0 else float("nan")


def recall_at_k(y: np.ndarray, score: np.ndarray, k: int) -> float:
    pos = float(np.sum(y))
    return expected_hits_at_k(y, score, k) / pos if pos > 0 else float("nan")


def expected_calibration_error(y: np.ndarray, prob: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |observed rate - mean predicted probability| over equal-width bins."""
    y = np.asarray(y, dtype=float)
    prob = np.asarray(prob, dtype=float)
    if len(y) == 0:
        return float("nan")
    idx = np.minimum((prob * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(idx):
        m = idx == b
        total += m.sum() * abs(y[m].mean() - prob[m].mean())
    return float(total / len(y))


def recall_by_group(
    y: np.ndarray, score: np.ndarray, k: int, group: np.ndarray
) -> dict[str, float]:
    """Recall@k among the positives of each group (e.g. typology)."""
    y = np.asarray(y, dtype=int)
    score = np.asarray(score, dtype=float)
    group = np.asarray(group, dtype=object)
    n = len(y)
    if n == 0 or y.sum() == 0:
        return {}
    k = min(k, n)
    threshold = np.sort(np.asarray(score, dtype=float))[::-1][k - 1]
    above = score > threshold
    tied = score == threshold
    frac_tied = (k - above.sum()) / tied.sum()
    selected = above + tied * frac_tied  # expected selection indicator
    out = {}
    for g in sorted({str(v) for v in group[y == 1]}):
        m = (y == 1) & (group.astype(str) == g)
        out[g] = float(selected[m].sum() / m.sum())
    return out


def score_metrics(
    y: np.ndarray,
    score: np.ndarray,
    k: int,
    prob: np.ndarray | None = None,
    top_fraction: float | None = None,
    ece_bins: int = 10,
    group: np.ndarray | None = None,
) -> dict[str, Any]:
    """AP, ROC AUC, precision/recall@k (and @top_fraction), Brier, ECE and recall by group."""
    y = np.asarray(y, dtype=int)
    score = np.asarray(score, dtype=float)
    n, pos = len(y), int(y.sum())
    k = min(k, n)
    out: dict[str, Any] = {"n": n, "positives": pos, "k": k}
    both = 0 < pos < n
    out["ap"] = float(average_precision_score(y, score)) if both else float("nan")
    out["roc_auc"] = float(roc_auc_score(y, score)) if both else float("nan")
    out["precision_at_k"] = precision_at_k(y, score, k)
    out["recall_at_k"] = recall_at_k(y, score, k)
    if top_fraction is not None:
        k_frac = max(1, int(round(top_fraction * n)))
        out["k_top_fraction"] = k_frac
        out["precision_at_top_fraction"] = precision_at_k(y, score, k_frac)
        out["recall_at_top_fraction"] = recall_at_k(y, score, k_frac)
    if prob is not None:
        out["brier"] = float(brier_score_loss(y, np.clip(prob, 0.0, 1.0))) if n else float("nan")
        out["ece"] = expected_calibration_error(y, prob, ece_bins)
    if group is not None:
        out["recall_at_k_by_typology"] = recall_by_group(y, score, k, group)
    return out
