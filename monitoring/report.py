"""A batch run's summary as files an analyst opens: summary.json, summary.html and PNG plots.

The HTML page is self-contained apart from its `plots/*.png` (relative links), so the run
directory can be copied or attached to a ticket as is. When an MLflow tracking store is
configured (`MLFLOW_TRACKING_URI`), the counts, PSIs and the files are logged to the
`exportguard-batch` experiment; without one nothing is contacted.
"""

from __future__ import annotations

import html
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from exportguard.fileio import atomic_write
from exportguard.monitoring.drift import SCORE_BINS
from exportguard.scoring.calibration import BAND_NAMES

log = logging.getLogger(__name__)

EXPERIMENT = "exportguard-batch"


def _score_plot(path: Path, stats: dict[str, Any], reference: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    counts = np.asarray(stats["score_hist"], dtype=float)
    edges = np.linspace(0.0, 1.0, SCORE_BINS + 1)
    share = counts / max(counts.sum(), 1.0)
    axes[0].bar(
        edges[:-1], share, width=1.0 / SCORE_BINS, align="edge", alpha=0.7, label="this run"
    )
    axes[0].set_xlabel("score (calibrated probability)")
    axes[0].set_ylabel("share of accounts")
    axes[0].set_yscale("log")
    axes[0].set_title("score distribution")
    ref = reference.get("score") if isinstance(reference, dict) else None
    if stats.get("score_ref") is not None and ref:
        run = np.asarray(stats["score_ref"][:-1], dtype=float)
        run = run / max(run.sum(), 1.0)
        props = np.asarray(ref["proportions"], dtype=float)
        x = np.arange(len(props))
        axes[1].bar(x - 0.2, props, width=0.4, label="training reference")
        axes[1].bar(x + 0.2, run, width=0.4, label="this run")
        axes[1].set_xlabel("reference score bin (training quantiles)")
        axes[1].legend()
        axes[1].set_title("score vs training reference")
    else:
        axes[1].text(0.5, 0.5, "no training reference", ha="center", va="center")
        axes[1].set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _psi_plot(path: Path, drift: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [(n, d["psi"]) for n, d in drift["features"].items() if d["psi"] is not None]
    items.sort(key=lambda t: -t[1])
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.22 * len(items) + 1)))
    if items:
        names, values = zip(*items, strict=True)
        colors = ["#c0392b" if v >= 0.2 else "#e67e22" if v >= 0.1 else "#27ae60" for v in values]
        ax.barh(range(len(values)), values, color=colors)
        ax.set_yticks(range(len(values)), names, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0.1, ls="--", c="#e67e22")
        ax.axvline(0.2, ls="--", c="#c0392b")
        ax.set_xlabel("population stability index vs training")
    else:
        ax.text(0.5, 0.5, "drift unavailable (no training reference)", ha="center", va="center")
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _table(rows: list[list[Any]], head: list[str]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def _html(summary: dict[str, Any]) -> str:
    c = summary["counts"]
    drift = summary["drift"]
    ref_bands = summary.get("reference_bands") or {}
    band_rows = [[b, summary["bands"].get(b, 0), ref_bands.get(b, "n/a")] for b in BAND_NAMES]
    psi_rows = [
        [n, "n/a" if d["psi"] is None else f"{d['psi']:.4f}", d["level"]]
        for n, d in sorted(drift["features"].items(), key=lambda t: -(t[1]["psi"] or 0.0))
    ]
    top_rows = [
        [
            a["account_id"],
            f"{a['score']:.4f}",
            a["band"],
            " | ".join(r["sentence"] for r in a["reasons"][:3]),
        ]
        for a in summary["top_accounts"]
    ]
    changes = summary.get("band_changes")
    if changes is None:
        change_html = "<p>No previous committed run in this output directory.</p>"
    else:
        change_html = (
            f"<p>{changes['rose']} account(s) rose and {changes['fell']} fell since run "
            f"{html.escape(str(changes['previous_run_id']))} (as of {html.escape(str(changes['previous_as_of']))}); "
            f"{changes['new_accounts']} account(s) are new.</p>"
            + _table(
                [
                    [a["account_id"], a["band_previous"], a["band"], f"{a['score']:.4f}"]
                    for a in changes["accounts"]
                ],
                ["account", "previous band", "band", "score"],
            )
        )
    score_psi = drift["score"]["psi"]
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>exportguard batch run {html.escape(summary["run_id"])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px;text-align:left}}</style></head><body>
<h1>Batch run {html.escape(summary["run_id"])}</h1>
<p>As of {html.escape(summary["as_of"])}, model {html.escape(summary["model"]["name"])} version
{html.escape(summary["model"]["version"])} (sha256 {html.escape(summary["model"]["sha256"][:16])}…), engine {html.escape(summary["engine"])}.</p>
<h2>Counts</h2>
<p>{c["input"]} input rows: {c["scored"]} scored, {c["quarantined"]} quarantined ({100 * summary["quarantine_share"]:.2f}%).</p>
{_table([[k, v] for k, v in summary["quarantine_reasons"].items()], ["quarantine reason", "rows"])}
<h2>Bands and score</h2>
{_table(band_rows, ["band", "accounts", "training reference"])}
<p>Score PSI vs training: {"n/a" if score_psi is None else f"{score_psi:.4f}"} ({drift["score"]["level"]}).</p>
<img src="plots/score.png" alt="score distribution">
<h2>Feature drift (PSI; warn at {drift["warn_at"]}, alert at {drift["alert_at"]})</h2>
<p>{html.escape(drift.get("note", ""))}</p>
<img src="plots/psi.png" alt="PSI per feature">
{_table(psi_rows, ["feature", "PSI", "level"])}
<h2>Top accounts</h2>
{_table(top_rows, ["account", "score", "band", "top reasons"])}
<h2>Band changes since the previous run</h2>
{change_html}
</body></html>
"""


def write_report(
    base: Path, summary: dict[str, Any], stats: dict[str, Any], reference: dict[str, Any]
) -> list[str]:
    """Write summary.json, summary.html and plots/*.png into `base`; returns their names."""
    (base / "plots").mkdir(exist_ok=True)
    _score_plot(base / "plots" / "score.png", stats, reference)
    _psi_plot(base / "plots" / "psi.png", summary["drift"])
    text = json.dumps(summary, indent=1, sort_keys=True, default=str).encode()
    atomic_write(base / "summary.json", lambda fh: fh.write(text))
    page = _html(summary).encode()
    atomic_write(base / "summary.html", lambda fh: fh.write(page))
    return ["summary.json", "summary.html", "plots/score.png", "plots/psi.png"]


def log_to_mlflow(run_dir: Path, summary: dict[str, Any]) -> bool:
    """Log the run to MLflow if MLFLOW_TRACKING_URI is set; a logging failure is only a warning."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return False
    from exportguard.telemetry import disable_telemetry

    disable_telemetry()
    try:
        import mlflow

        # the store the user named, even if this process pointed MLflow elsewhere before
        # (training.tracking sets the embedded store process-wide)
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(EXPERIMENT)
        with mlflow.start_run(run_name=f"batch-{summary['run_id']}"):
            mlflow.set_tags(
                {
                    "batch_run_id": summary["run_id"],
                    "as_of": summary["as_of"],
                    "model_sha256": summary["model"]["sha256"],
                    "model_version": summary["model"]["version"],
                    "engine": summary["engine"],
                }
            )
            metrics = {f"count_{k}": float(v) for k, v in summary["counts"].items()}
            metrics.update({f"band_{k}": float(v) for k, v in summary["bands"].items()})
            metrics["quarantine_share"] = float(summary["quarantine_share"])
            if summary["drift"]["score"]["psi"] is not None:
                metrics["psi_score"] = float(summary["drift"]["score"]["psi"])
            for name, d in summary["drift"]["features"].items():
                if d["psi"] is not None:
                    metrics[f"psi_{name}"] = float(d["psi"])
            mlflow.log_metrics(metrics)
            mlflow.log_artifacts(str(run_dir / "plots"), artifact_path="plots")
            mlflow.log_artifact(str(run_dir / "summary.json"))
            mlflow.log_artifact(str(run_dir / "summary.html"))
    except Exception as exc:  # tracking is a side channel: the committed run stands
        log.warning("could not log batch run %s to MLflow: %s", summary["run_id"], exc)
        return False
    log.info("logged batch run %s to MLflow experiment %s", summary["run_id"], EXPERIMENT)
    return True
