"""The promotion gate: move the `champion` alias only to a recipe that is not worse.

Both deployed models are refits on every label they had, so neither can be judged on
labels it has seen, and the champion's model never saw today's labels at all. The gate
therefore compares *recipes*: the candidate's and the champion's (their LightGBM
parameters and feature lists travel in the bundles) are backtested on the same rolling
time folds of today's training set; the candidate passes if its mean average precision
and mean recall at the review capacity are each no more than `promote.tolerance` below
the champion's, and if its TreeSHAP explanations add up to its raw scores (the property
every reason shown to an analyst relies on). Reported besides, not gated: how much the
two deployed models' top-k lists overlap on today's population. The first model becomes
champion after the additivity check. Then the champion is exported to `models/champion/`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from exportguard.errors import ExportguardError
from exportguard.scoring.bundle import Bundle, load_bundle
from exportguard.scoring.scorer import Scorer
from exportguard.training.config import Params, TrainParams
from exportguard.training.inputs import FeatureSet
from exportguard.training.pipeline import use_presumed_negatives
from exportguard.training.recipe import Recipe, backtest
from exportguard.training.tracking import connect

log = logging.getLogger(__name__)

GATED = ("ap", "recall_at_k")
#: population rows the additivity check explains
ADDITIVITY_ROWS = 2000


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
    """A bundle's raw scores on a feature table, through the serving Scorer (refused if the
    table lacks its features)."""
    try:
        return Scorer(bundle).raw_scores(frame)
    except ValueError as exc:
        raise ExportguardError(
            f"model {bundle.name} v{bundle.version} cannot score this feature table: {exc}"
        ) from None


def bundle_recipe(bundle: Bundle) -> Recipe:
    """The recipe that produced a bundle: its training parameters and feature list."""
    try:
        train = TrainParams.model_validate(bundle.metadata["train_params"])
    except (KeyError, ValueError) as exc:
        raise ExportguardError(
            f"model {bundle.name} v{bundle.version} records no usable train_params ({exc})"
        ) from None
    return Recipe(train, tuple(bundle.feature_names))


def recipe_metrics(
    recipe: Recipe, examples: pd.DataFrame, as_of: pd.Timestamp, params: Params
) -> dict[str, Any]:
    """The recipe's backtest on today's folds: mean and per-fold AP and recall@k."""
    bt = backtest(recipe, examples, as_of, params)
    return {
        "ap": bt.mean("ap"),
        "recall_at_k": bt.mean("recall_at_k"),
        "ap_sd": bt.sd("ap"),
        "per_fold": bt.per_fold,
        "k": params.bands.review_capacity_per_week,
        "n": len(bt.oof_raw),
        "recipe": recipe.digest,
    }


def top_k_overlap(a: Bundle, b: Bundle, population: pd.DataFrame, k: int) -> float:
    """Share of the candidate's top-k accounts that are also in the champion's top k."""
    k = min(k, len(population))
    top_a = set(np.argsort(-raw_scores(a, population), kind="stable")[:k])
    top_b = set(np.argsort(-raw_scores(b, population), kind="stable")[:k])
    return len(top_a & top_b) / k if k else float("nan")


def additivity_error(bundle: Bundle, frame: pd.DataFrame) -> float:
    """The serving Scorer's explanation check (TreeSHAP sums vs raw, vs LightGBM's pred_contrib)."""
    return Scorer(bundle).additivity_error(frame)


def gate(
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    tolerance: float,
    add_error: float,
    add_tolerance: float,
) -> GateResult:
    """Pure decision: compare the recipes' backtest metrics and the additivity error."""
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
    params: Params, version: str | None, out_dir: Path, project_dir: Path, fs: FeatureSet
) -> tuple[GateResult, Bundle]:
    """Run the gate for `version` (default: the latest) on `fs`; move the alias and export."""
    from exportguard.training.export import replace_bundle

    reg = params.registry
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = connect(project_dir)
    version = _resolve_version(client, reg.model_name, version)
    current = _champion_version(client, reg.model_name, reg.champion_alias)
    examples = use_presumed_negatives(fs.examples, params)
    k = params.bands.review_capacity_per_week
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        candidate, run_id = _version_bundle(client, reg.model_name, version, tmp_path)
        cand_metrics = recipe_metrics(bundle_recipe(candidate), examples, fs.as_of, params)
        champ_metrics, details = None, {}
        if current is not None and current != version:
            # a champion exported by an older release is still compared, never served
            champion, _ = _version_bundle(client, reg.model_name, current, tmp_path, legacy_ok=True)
            recipe = bundle_recipe(champion)
            lacking = [n for n in recipe.features if n not in examples.columns]
            if lacking:
                raise ExportguardError(
                    f"the champion's recipe (version {current}) uses feature(s) {lacking[:5]} "
                    "this training set lacks; promote with --version after retraining it, or "
                    "move the alias by hand"
                )
            champ_metrics = recipe_metrics(recipe, examples, fs.as_of, params)
            details["top_k_overlap"] = top_k_overlap(candidate, champion, fs.population, k)
        sample = fs.population.head(ADDITIVITY_ROWS)
        result = gate(
            cand_metrics,
            champ_metrics,
            params.promote.tolerance,
            additivity_error(candidate, sample),
            params.promote.additivity_tolerance,
        )
        result = GateResult(**{**result.__dict__, "details": details})
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
                "gate": {
                    "candidate_recipe": {
                        m: cand_metrics[m] for m in ("ap", "recall_at_k", "k", "n")
                    },
                    "champion_recipe": None
                    if champ_metrics is None
                    else {m: champ_metrics[m] for m in ("ap", "recall_at_k")},
                    **details,
                },
            },
        )
    log.info("%s version %s is %s", reg.model_name, version, reg.champion_alias)
    return result, exported
