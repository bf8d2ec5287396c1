"""The PNG plots a data scientist looks at for a run (matplotlib, headless).

PR curves (model vs both baselines) on the test labels and, when known, on the truth;
a reliability diagram of the calibrated score; a SHAP beeswarm summary of exact TreeSHAP
contributions (LightGBM's own, drawn with the shap package; missing values shown grey);
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
    """Beeswarm of exact TreeSHAP values on (a seeded sample of) `frame`."""
    import shap

    plt = _pyplot()
    sample = frame.sample(n=min(max_rows, len(frame)), random_state=0) if len(frame) else frame
    contrib = booster.predict(model_matrix(sample), pred_contrib=True)[:, :-1]
    values = sample.loc[:, list(FEATURE_NAMES)].astype(float)
    plt.figure()
    shap.summary_plot(
        contrib, values, feature_names=list(FEATURE_NAMES), show=False, max_display=20
    )
    plt.title("SHAP (log-odds), top 20 features")
    plt.tight_layout()
    plt.savefig(out, dpi=110)
    plt.close("all")
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
