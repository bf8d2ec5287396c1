"""The evaluation table printed at the end of `train` and `evaluate`."""

from __future__ import annotations

from typing import Any

from exportguard.training.pipeline import SCORERS

NAMES = {"model": "LightGBM", "logistic": "logistic regr.", "red_flags": "red-flag count"}
COLUMNS = (
    ("ap", "AP"),
    ("roc_auc", "ROC AUC"),
    ("precision_at_k", "P@k"),
    ("recall_at_k", "R@k"),
    ("precision_at_top_fraction", "P@top"),
    ("recall_at_top_fraction", "R@top"),
    ("brier", "Brier"),
    ("ece", "ECE"),
)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:.3f}"


def render_section(title: str, table: dict[str, Any]) -> list[str]:
    first = table[SCORERS[0]]
    top = first.get("k_top_fraction")
    lines = [
        f"{title}: n={first['n']:,}, positives={first['positives']:,}, k={first['k']}"
        + (f", top={top}" if top is not None else ""),
        f"  {'':16s}" + "".join(f"{label:>9s}" for _, label in COLUMNS),
    ]
    for name in SCORERS:
        row = table[name]
        lines.append(
            f"  {NAMES[name]:16s}" + "".join(f"{_cell(row.get(m)):>9s}" for m, _ in COLUMNS)
        )
    typ = first.get("recall_at_k_by_typology")
    if typ:
        lines.append(
            "  recall@k by typology (LightGBM): "
            + ", ".join(f"{t} {v:.2f}" for t, v in sorted(typ.items()))
        )
    return lines


def render_table(metrics: dict[str, Any]) -> str:
    """Model vs both baselines on the test labels and, if present, against the truth."""
    lines = render_section("Test labels (later in time)", metrics["test"])
    folds = metrics.get("folds")
    if folds and folds.get("n_folds", 0) > 1:
        lines.append(
            f"  AP over {folds['n_folds']} rolling folds: "
            + ", ".join(
                f"{NAMES[s]} {folds[f'{s}_ap_mean']:.3f}±{folds[f'{s}_ap_sd']:.3f}" for s in SCORERS
            )
        )
    if "truth" in metrics:
        lines.append("")
        lines += render_section("Never-reviewed accounts vs ground truth", metrics["truth"])
    return "\n".join(lines)


SUMMARY_KEYS = (
    "ap",
    "roc_auc",
    "precision_at_k",
    "recall_at_k",
    "recall_at_top_fraction",
    "brier",
    "ece",
)


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The headline figures only (for `dvc metrics show`): set -> scorer -> metric."""
    out: dict[str, Any] = {}
    for section in ("test", "truth"):
        if section in metrics:
            out[section] = {
                name: {
                    key: round(float(metrics[section][name][key]), 4)
                    for key in SUMMARY_KEYS
                    if key in metrics[section][name]
                }
                for name in SCORERS
            }
    return out
