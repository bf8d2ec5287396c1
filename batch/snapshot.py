"""The two ends of a batch run outside scoring: features from raw data, and the online snapshot.

`--data DIR` computes point-in-time features once into the output's staging area (by the
DuckDB feature engine, or in Spark under `--engine spark`; cached by a digest of the data,
the as-of time and the policy, so a resumed run does not recompute them) and the run then
streams that table like any `--features FILE`. After a
commit, the scored accounts' feature rows become the feature snapshot that the online
service's `/score_accounts` looks up. `write_snapshot` takes a whole frame, so this step
holds the feature table (not the scores) in memory once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from exportguard.batch.rows import ID, ROW
from exportguard.batch.store import BatchError
from exportguard.digest import data_fingerprint, json_digest
from exportguard.features.policy import Policy, load_policy_file, policy_differences
from exportguard.features.registry import FEATURE_NAMES
from exportguard.fileio import atomic_write
from exportguard.scoring.bundle import Bundle

log = logging.getLogger(__name__)


def model_policy(bundle: Bundle, params: Path | None) -> Policy:
    """The policy the model was trained with; a params file may only restate it."""
    trained = bundle.policy
    if params is None:
        return trained
    given = load_policy_file(params)
    differ = policy_differences(given, trained)
    if differ:
        raise BatchError(
            f"{params}: policy key(s) {differ} differ from the policy the model at {bundle.path} was "
            "trained with; its features would not be the model's (drop --params to use the "
            "model's policy, or retrain with this one)"
        )
    return trained


def features_from_data(
    data_dir: Path,
    as_of: pd.Timestamp | None,
    policy: Policy,
    out: Path,
    chunk_rows: int,
    engine: str = "duckdb",
) -> tuple[Path, pd.Timestamp, str]:
    """Feature table of `data_dir` as of T (cached under OUT/_staging); its path, T and digest.
    `engine` is the feature engine (`features.compute.ENGINES`); every engine gives the same
    table, so the cache does not depend on it."""
    from exportguard.features.contract import scan_tables

    tables = report = None
    if as_of is None:
        tables, report = scan_tables(data_dir)
        as_of = report.horizon
        if as_of is None:
            raise BatchError(
                f"{data_dir}: no --as-of given and the data has no activity to infer it from"
            )
    digest = json_digest(
        {
            "data": data_fingerprint(Path(data_dir)),
            "as_of": pd.Timestamp(as_of).isoformat(),
            "policy": policy.model_dump(mode="json"),
        }
    )
    path = Path(out) / "_staging" / f"features-{digest[:16]}.parquet"
    if path.is_file():
        log.info("reusing features computed earlier for this data and as-of time: %s", path)
        return path, pd.Timestamp(as_of), digest
    from exportguard.features.compute import account_features

    if tables is None:
        tables, report = scan_tables(data_dir)
    frame = account_features(tables, pd.Timestamp(as_of), policy, engine=engine)
    frame = frame.assign(as_of=pd.Timestamp(as_of))
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # timestamps in microseconds: Spark cannot read Parquet's nanosecond timestamps
    atomic_write(
        path,
        lambda fh: pq.write_table(table, fh, row_group_size=chunk_rows, coerce_timestamps="us"),
    )
    log.info("computed features of %d accounts as of %s into %s", len(frame), as_of, path)
    return path, pd.Timestamp(as_of), digest


def snapshot_from_run(
    features: Path, run_dir: Path, store: Path, feature_spec: dict[str, Any]
) -> Path:
    """Write the committed run's scored accounts' features as the latest online snapshot
    (recording the feature spec of the model that scored them)."""
    from exportguard.serving.snapshot import write_snapshot

    manifest: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    bad = pq.read_table(run_dir / manifest["quarantine"]["file"], columns=[ROW]).column(0)
    frame = pq.read_table(features, columns=[ID, *FEATURE_NAMES]).to_pandas()
    keep = np.ones(len(frame), dtype=bool)
    keep[np.asarray(bad.to_numpy(), dtype=np.int64)] = False
    return write_snapshot(
        frame.loc[keep].reset_index(drop=True),
        Path(store),
        pd.Timestamp(manifest["as_of"]),
        source=f"batch run {manifest['run_id']} ({manifest['input']['source']})",
        feature_spec=feature_spec,
    )
