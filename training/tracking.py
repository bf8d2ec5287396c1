"""MLflow at the edge: log a finished training run, its plots and model, and register it.

Default store: `sqlite:///<project>/mlflow.db` with artifacts under `<project>/mlruns`
(no server); `MLFLOW_TRACKING_URI` points elsewhere, e.g. at a team's tracking server.
Besides the MLflow model (signature and input example, for browsing and comparison), the
run carries `bundle/`: the hash-checked export that promotion copies to `models/` and
that serving loads. Nothing here is ever unpickled.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from exportguard.errors import ExportguardError
from exportguard.features.matrix import model_matrix
from exportguard.features.registry import FEATURE_NAMES
from exportguard.training import plots
from exportguard.training.config import Params
from exportguard.training.pipeline import SCORERS, TrainingResult

log = logging.getLogger(__name__)

PIP_REQUIREMENTS = ["lightgbm>=4.6", "numpy>=1.26", "pandas>=2.2"]


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    experiment_id: str
    model_version: str | None
    tracking_uri: str


#: the URIs this module itself set (mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI)
_EMBEDDED: set[str] = set()


def _user_uri() -> str | None:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    return env if env and env not in _EMBEDDED else None


def tracking_uri(project_dir: Path) -> str:
    """MLFLOW_TRACKING_URI if the user set it, else the embedded SQLite store in the project."""
    return _user_uri() or f"sqlite:///{Path(project_dir).resolve() / 'mlflow.db'}"


def connect(project_dir: Path) -> Any:
    """Point MLflow at the store and return a client."""
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(project_dir)
    if _user_uri() is None:
        _EMBEDDED.add(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: Any, name: str, project_dir: Path) -> str:
    """The experiment's id; created with artifacts under <project>/mlruns for a local store."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = None
    if _user_uri() is None:
        location = (Path(project_dir).resolve() / "mlruns").as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of the nested metrics as `a.b.c` keys (per-fold lists left out)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flat_metrics(value, name))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isnan(float(value)):
                out[name.replace("/", "_")] = float(value)
    return out


def _plots(result: TrainingResult, out: Path, params: Params) -> list[Path]:
    h = result.holdout
    y = h["label"].to_numpy()
    curves = {"test labels": (y, {s: h[f"score_{s}"].to_numpy() for s in SCORERS})}
    pop = result.population
    if "is_circumvention" in pop:
        never = pop.loc[~pop["reviewed_before"]]
        truth_y = never["is_circumvention"].to_numpy(dtype=int)
        curves["never-reviewed accounts vs truth"] = (
            truth_y,
            {
                "model": never["raw"].to_numpy(),
                "logistic": never["score_logistic"].to_numpy(),
                "red_flags": never["score_red_flags"].to_numpy(),
            },
        )
    paths = [
        plots.pr_curve(curves, out / "pr_curve.png"),
        plots.calibration_plot(
            y, h["prob_model"].to_numpy(), out / "calibration.png", params.evaluate.ece_bins
        ),
        plots.importance_plot(result.importance, out / "feature_importance.png"),
    ]
    try:
        paths.append(plots.shap_summary(result.booster, h, out / "shap_summary.png"))
    except Exception as exc:  # a plotting failure must not lose the run
        log.warning("SHAP summary plot failed: %s", exc)
    return paths


def log_run(
    result: TrainingResult,
    params: Params,
    metadata: dict[str, Any],
    *,
    project_dir: Path,
    tags: dict[str, str],
    register: bool,
) -> LoggedRun:
    """Log params, metrics, tags, plots, the bundle, the holdout and the model; maybe register."""
    import mlflow
    from mlflow.models import infer_signature

    from exportguard.training.export import write_result_bundle

    client = connect(project_dir)
    experiment_id = ensure_experiment(client, params.registry.experiment, project_dir)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params(params.flat())
        mlflow.log_metrics(flat_metrics(result.metrics))
        mlflow.set_tags(tags)
        mlflow.log_dict(result.metrics, "metrics.json")
        mlflow.log_dict({"features": list(FEATURE_NAMES)}, "features.json")
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            bundle_meta = dict(metadata, run_id=run.info.run_id)
            write_result_bundle(tmp_path / "bundle", result, bundle_meta, params.policy)
            mlflow.log_artifacts(str(tmp_path / "bundle"), "bundle")
            for path in _plots(result, tmp_path, params):
                mlflow.log_artifact(str(path), "plots")
            holdout = tmp_path / "holdout.parquet"
            result.holdout.to_parquet(holdout, index=False)
            mlflow.log_artifact(str(holdout), "holdout")
            logistic = tmp_path / "logistic.json"
            logistic.write_text(json.dumps(result.logistic.to_json()), encoding="utf-8")
            mlflow.log_artifact(str(logistic), "baselines")
        example = pd.DataFrame(model_matrix(result.holdout.head(5)), columns=list(FEATURE_NAMES))
        signature = infer_signature(example, result.booster.predict(example.to_numpy()))
        info = mlflow.lightgbm.log_model(
            result.booster,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=params.registry.model_name if register else None,
        )
        version = getattr(info, "registered_model_version", None)
    logged = LoggedRun(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_version=str(version) if version is not None else None,
        tracking_uri=tracking_uri(project_dir),
    )
    log.info(
        "MLflow run %s logged%s",
        logged.run_id,
        f"; registered {params.registry.model_name} version {version}" if version else "",
    )
    return logged


def download(client: Any, run_id: str, artifact_path: str, dst: Path) -> Path:
    """Fetch one artifact (file or directory) of a run into `dst`."""
    import mlflow

    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact_path, dst_path=str(dst)
        )
    except Exception as exc:  # MLflow raises several types for a missing artifact
        raise ExportguardError(
            f"MLflow run {run_id} has no artifact {artifact_path!r} ({exc.__class__.__name__})"
        ) from None
    return Path(local)
