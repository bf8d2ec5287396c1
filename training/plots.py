"""The PNG plots a data scientist looks at for a run (matplotlib, headless).

PR curves (model vs both baselines) on the test labels and, when known, on the truth;
a reliability diagram of the calibrated score; a SHAP beeswarm summary of exact TreeSHAP
contributions (the Scorer's engine, drawn with matplotlib; missing values shown grey);
and gain importance.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve

from exportguard.features.matrix import model_matrix
from exportguard.features.registry import FEATURE_NAMES

log = logging.getLogger(__name__)

LABELS = {"model": "LightGBM", "logistic": "logistic regression", "red_flags": "red-flag count"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def pr_curve(curves: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]], out: Path) -> Path:
    """One panel per evaluation set: {set name: (y, {scorer: score})}."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 5), squeeze=False)
    for ax, (title, (y, scores)) in zip(axes[0], curves.items(), strict=True):
        for name, score in scores.items():
            precision, recall, _ = precision_recall_curve(y, score)
            ax.step(recall, precision, where="post", label=LABELS.get(name, name))
        ax.axhline(float(np.mean(y)), color="grey", ls=":", label="prevalence")
        ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def calibration_plot(y: np.ndarray, prob: np.ndarray, out: Path, bins: int = 10) -> Path:
    """Reliability diagram: observed rate against mean predicted probability per bin."""
    plt = _pyplot()
    idx = np.minimum((np.asarray(prob) * bins).astype(int), bins - 1)
    mean_p = [prob[idx == b].mean() for b in range(bins) if (idx == b).any()]
    rate = [y[idx == b].mean() for b in range(bins) if (idx == b).any()]
    count = [int((idx == b).sum()) for b in range(bins) if (idx == b).any()]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", ls=":", label="perfect")
    ax.plot(mean_p, rate, marker="o", label="calibrated LightGBM")
    for p, r, c in zip(mean_p, rate, count, strict=True):
        ax.annotate(str(c), (p, r), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", title="calibration (test)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def shap_summary(booster: Any, frame: pd.DataFrame, out: Path, max_rows: int = 2000) -> Path:
    """Beeswarm of exact TreeSHAP values (the Scorer's engine) on a seeded sample of `frame`.

    One row per feature (the 20 with the largest mean |contribution|, largest on top), one
    dot per account at its contribution, coloured by the feature's value rank (blue low,
    red high; grey when missing), spread vertically where dots crowd.
    """
    from exportguard.scoring.scorer import tree_explainer, tree_shap

    plt = _pyplot()
    sample = frame.sample(n=min(max_rows, len(frame)), random_state=0) if len(frame) else frame
    contrib, _ = tree_shap(tree_explainer(booster), model_matrix(sample))
    values = sample.loc[:, list(FEATURE_NAMES)].to_numpy(dtype=float)
    top = np.argsort(-np.abs(contrib).mean(axis=0), kind="stable")[:20][::-1]
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(top) + 1.5))
    for row, j in enumerate(top):
        phi, v = contrib[:, j], values[:, j]
        present = ~np.isnan(v)
        rank = np.full(len(v), np.nan)
        if present.any():
            rank[present] = pd.Series(v[present]).rank(pct=True).to_numpy()
        counts, edges = np.histogram(phi, bins=50)
        crowd = counts[np.clip(np.searchsorted(edges, phi, side="right") - 1, 0, 49)]
        y = row + rng.uniform(-0.4, 0.4, len(phi)) * np.sqrt(crowd / max(counts.max(), 1))
        ax.scatter(phi[~present], y[~present], s=4, color="#bbbbbb", linewidths=0)
        ax.scatter(phi[present], y[present], s=4, c=rank[present], cmap="coolwarm",
                   vmin=0, vmax=1, linewidths=0)  # fmt: skip
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_yticks(range(len(top)), [FEATURE_NAMES[j] for j in top], fontsize=7)
    ax.set(xlabel="SHAP value (log-odds)", title="SHAP (log-odds), top 20 features")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def importance_plot(importance: pd.DataFrame, out: Path, top: int = 25) -> Path:
    """Horizontal bar chart of total split gain per feature."""
    plt = _pyplot()
    head = importance.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(head) + 1.2))
    ax.barh(head["feature"], head["gain"])
    ax.set(xlabel="total gain", title=f"feature importance (top {len(head)})")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
