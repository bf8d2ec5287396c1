"""The promotion gate: move the `champion` alias only to a model that is not worse.

Candidate and champion are scored on the same later-in-time holdout (the test labels
logged with the candidate's run); the candidate passes if its average precision and its
recall at the review capacity are each no more than `promote.tolerance` below the
champion's, and if its TreeSHAP explanations add up to its raw scores (the property every
reason shown to an analyst relies on). The first model becomes champion after the
additivity check. Then the champion is exported to `models/champion/`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from exportguard.bundle import Bundle, load_bundle
from exportguard.errors import ExportguardError
from exportguard.features.matrix import model_matrix
from exportguard.training.config import Params
from exportguard.training.metrics import score_metrics

log = logging.getLogger(__name__)

GATED = ("ap", "recall_at_k")


class PromotionRefused(ExportguardError):
    """The candidate failed the gate; the champion is unchanged."""

    exit_code = 1


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]
    candidate: dict[str, Any]
    champion: dict[str, Any] | None = None
    additivity_error: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def raw_scores(bundle: Bundle, frame: pd.DataFrame) -> np.ndarray:
    """A bundle's raw scores on a feature table (refused if the table lacks its features)."""
    try:
        matrix = model_matrix(frame, bundle.feature_names)
    except ValueError as exc:
        raise ExportguardError(
            f"model {bundle.name} v{bundle.version} cannot score the holdout: {exc}"
        ) from None
    return lgb.Booster(model_str=bundle.model_text).predict(matrix, raw_score=True)


def holdout_metrics(bundle: Bundle, holdout: pd.DataFrame, k: int) -> dict[str, Any]:
    raw = raw_scores(bundle, holdout)
    return score_metrics(holdout["label"].to_numpy(dtype=int), raw, k, prob=bundle.calibration(raw))


def additivity_error(bundle: Bundle, frame: pd.DataFrame) -> float:
    """Largest gap between TreeSHAP (LightGBM's and serving's FastTreeSHAP) sums and raw scores."""
    import warnings

    with warnings.catch_warnings():  # its import warns about IPython and `is` literals
        warnings.simplefilter("ignore")
        import fasttreeshap_fixed as fts

    booster = lgb.Booster(model_str=bundle.model_text)
    matrix = model_matrix(frame, bundle.feature_names)
    raw = booster.predict(matrix, raw_score=True)
    contrib = booster.predict(matrix, pred_contrib=True)
    gap = float(np.max(np.abs(contrib.sum(axis=1) - raw), initial=0.0))
    explainer = fts.TreeExplainer(booster, algorithm="v1", n_jobs=1)
    phi = np.asarray(explainer.shap_values(matrix, check_additivity=False), dtype=float)
    if phi.ndim == 3:
        phi = phi[-1]
    gap = max(gap, float(np.max(np.abs(phi - contrib[:, :-1]), initial=0.0)))
    return gap


def gate(
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    tolerance: float,
    add_error: float,
    add_tolerance: float,
) -> GateResult:
    """Pure decision: compare holdout metrics and the additivity error against the rules."""
    reasons = []
    if not add_error <= add_tolerance:
        reasons.append(
            f"SHAP contributions do not add up to the raw score (max error {add_error:.2e} > {add_tolerance:.0e})"
        )
    if champion is not None:
        for metric in GATED:
            c, ch = float(candidate[metric]), float(champion[metric])
            if not c >= ch - tolerance:
                reasons.append(
                    f"{metric} {c:.4f} is worse than the champion's {ch:.4f} (tolerance {tolerance})"
                )
    return GateResult(not reasons, reasons, candidate, champion, add_error)


def _version_bundle(
    client: Any, name: str, version: str, dst: Path, legacy_ok: bool = False
) -> tuple[Bundle, str]:
    from exportguard.training.tracking import download

    mv = client.get_model_version(name, version)
    if not mv.run_id:
        raise ExportguardError(f"{name} version {version} is not linked to a training run")
    path = download(client, mv.run_id, "bundle", dst / f"v{version}")
    return load_bundle(path, legacy_ok=legacy_ok), mv.run_id


def _resolve_version(client: Any, name: str, version: str | None) -> str:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        raise ExportguardError(f"cannot read registered model {name!r}: {exc}") from None
    known = sorted((int(v.version) for v in versions), reverse=True)
    if not known:
        raise ExportguardError(
            f"no registered versions of model {name!r}; run `exportguard train` first"
        )
    if version is None:
        return str(known[0])
    if not version.isdigit() or int(version) not in known:
        raise ExportguardError(f"{name} has no version {version!r} (known: {known[:10]})")
    return version


def _champion_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def promote(
    params: Params, version: str | None, out_dir: Path, project_dir: Path
) -> tuple[GateResult, Bundle]:
    """Run the gate for `version` (default: the latest); move the alias and export, or refuse."""
    from exportguard.training.export import replace_bundle
    from exportguard.training.tracking import connect, download

    reg = params.registry
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = connect(project_dir)
    version = _resolve_version(client, reg.model_name, version)
    current = _champion_version(client, reg.model_name, reg.champion_alias)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        candidate, run_id = _version_bundle(client, reg.model_name, version, tmp_path)
        holdout = pd.read_parquet(download(client, run_id, "holdout/holdout.parquet", tmp_path))
        k = params.bands.review_capacity_per_week
        cand_metrics = holdout_metrics(candidate, holdout, k)
        champ_metrics = None
        if current is not None and current != version:
            # a champion exported by an older release is still compared, never served
            champion, _ = _version_bundle(client, reg.model_name, current, tmp_path, legacy_ok=True)
            champ_metrics = holdout_metrics(champion, holdout, k)
        result = gate(
            cand_metrics,
            champ_metrics,
            params.promote.tolerance,
            additivity_error(candidate, holdout),
            params.promote.additivity_tolerance,
        )
        verdict = "passed" if result.passed else "refused: " + "; ".join(result.reasons)
        client.set_model_version_tag(reg.model_name, version, "promotion_gate", verdict[:5000])
        if not result.passed:
            raise PromotionRefused(
                f"{reg.model_name} version {version} not promoted (champion stays version "
                f"{current}): " + "; ".join(result.reasons)
            )
        client.set_registered_model_alias(reg.model_name, reg.champion_alias, version)
        exported = replace_bundle(
            candidate,
            out_dir,
            {
                "model_name": reg.model_name,
                "model_version": version,
                "alias": reg.champion_alias,
                "run_id": run_id,
                "promoted_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
                "previous_champion": current,
                "holdout_metrics": {m: cand_metrics[m] for m in ("ap", "recall_at_k", "k", "n")},
            },
        )
    log.info("%s version %s is %s", reg.model_name, version, reg.champion_alias)
    return result, exported
