"""Load a run's inputs: validated tables -> examples + population, or a saved feature set.

`build_feature_set` is the expensive step (every example's features at its own time, in
one vectorised pass, plus the population at the as-of time); `save_feature_set` writes it
with a manifest (data fingerprint, as-of time, hash of the parameters it depends on) so
`train` and `evaluate` can reuse it and refuse it when it is stale.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from exportguard.digest import data_fingerprint, json_digest
from exportguard.errors import ExportguardError
from exportguard.features.registry import FEATURE_NAMES
from exportguard.fileio import read_artifact, write_artifact
from exportguard.training.config import Params
from exportguard.training.dataset import (
    attach_features,
    example_requests,
    population_requests,
    resolve_as_of,
)

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class FeatureSet:
    examples: pd.DataFrame
    population: pd.DataFrame
    as_of: pd.Timestamp
    fingerprint: str


def feature_params_hash(params: Params) -> str:
    """Hash of the params sections that change the feature set (examples, policy)."""
    payload = {
        "examples": params.examples.model_dump(
            mode="json", exclude={"unreviewed": {"enabled", "weight"}}
        ),
        "policy": params.policy.model_dump(mode="json"),
        "features": list(FEATURE_NAMES),
    }
    return json_digest(payload)


def build_feature_set(
    data_dir: Path,
    params: Params,
    as_of: str | None = None,
    reviewed_labels: Path | None = None,
) -> FeatureSet:
    """Validate the data directory and compute examples and population features.

    `reviewed_labels` (a labels table from `exportguard review export-labels`) joins the
    directory's labels under the same contract checks.
    """
    from exportguard.features.contract import read_tables

    tables, _ = read_tables(data_dir, extra_labels=reviewed_labels)
    ts = resolve_as_of(tables, as_of or params.examples.as_of)
    requests = example_requests(tables, ts, params.examples)
    log.info("computing features for %d examples and the population as of %s", len(requests), ts)
    examples = attach_features(tables, requests, params.policy)
    population = attach_features(tables, population_requests(tables, ts), params.policy)
    return FeatureSet(examples, population, ts, data_fingerprint(data_dir))


def save_feature_set(fs: FeatureSet, out_dir: Path, params: Params) -> Path:
    """Write examples and population, then the manifest (their sha256, provenance) last."""
    out_dir = Path(out_dir)
    manifest = {
        "as_of": fs.as_of.isoformat(),
        "data_fingerprint": fs.fingerprint,
        "params_hash": feature_params_hash(params),
        "examples": len(fs.examples),
        "population": len(fs.population),
    }
    (out_dir / MANIFEST).unlink(missing_ok=True)  # an interrupted rewrite leaves no manifest
    write_artifact(
        out_dir,
        {
            "examples.parquet": lambda fh: fs.examples.to_parquet(fh, index=False),
            "population.parquet": lambda fh: fs.population.to_parquet(fh, index=False),
        },
        manifest,
        MANIFEST,
    )
    return out_dir


def load_feature_set(features_dir: Path, params: Params, data_dir: Path | None) -> FeatureSet:
    """Read a saved feature set; refuse it if built from other data or other parameters."""
    features_dir = Path(features_dir)
    manifest = read_artifact(
        features_dir,
        MANIFEST,
        "training set",
        f"build it with `exportguard examples --out {features_dir}`",
    )
    if manifest.get("params_hash") != feature_params_hash(params):
        raise ExportguardError(
            f"{features_dir} was built with different `examples`/`policy` parameters or feature "
            "list; rebuild it with `exportguard examples`"
        )
    if data_dir is not None and manifest.get("data_fingerprint") != data_fingerprint(data_dir):
        raise ExportguardError(
            f"{features_dir} was built from other data than {data_dir}; rebuild it with "
            "`exportguard examples`"
        )
    try:
        examples = pd.read_parquet(features_dir / "examples.parquet")
        population = pd.read_parquet(features_dir / "population.parquet")
    except (OSError, ValueError) as exc:
        raise ExportguardError(f"{features_dir}: unreadable feature set ({exc})") from None
    return FeatureSet(
        examples, population, pd.Timestamp(manifest["as_of"]), str(manifest["data_fingerprint"])
    )


def read_truth(path: Path) -> pd.DataFrame:
    """Ground truth (synthetic worlds): account_id, is_circumvention (0/1), typology?."""
    path = Path(path)
    if not path.is_file():
        raise ExportguardError(f"--truth {path}: file not found")
    try:
        truth = pd.read_parquet(path) if path.suffix != ".csv" else pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ExportguardError(f"--truth {path}: unreadable ({exc})") from None
    missing = {"account_id", "is_circumvention"} - set(truth.columns)
    if missing:
        raise ExportguardError(f"--truth {path}: missing column(s) {sorted(missing)}")
    truth = truth.copy()
    truth["account_id"] = truth["account_id"].astype(str)
    flag = pd.to_numeric(truth["is_circumvention"].astype("object"), errors="coerce")
    if flag.isna().any() or not flag.isin([0, 1]).all():
        raise ExportguardError(f"--truth {path}: is_circumvention must be 0/1 or true/false")
    truth["is_circumvention"] = flag.astype(int)
    if truth["account_id"].duplicated().any():
        raise ExportguardError(f"--truth {path}: duplicate account_id rows")
    if "typology" not in truth:
        truth["typology"] = None
    return truth.loc[:, ["account_id", "is_circumvention", "typology"]]
