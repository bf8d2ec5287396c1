"""The feature snapshot store: the latest materialised feature row per account, for online lookup.

`POST /score_accounts` scores accounts by id from here, and batch rescoring writes it. A
store is a directory holding

- `latest.parquet` one row per account: `account_id` plus every declared feature,
- `latest.json`    the manifest `{as_of, rows, sha256, source, written_at}`.

Writes are atomic (temp file, fsync, `os.replace`; parquet first, manifest last), so a
reader sees either the old or the new snapshot; `load_snapshot` re-hashes the parquet and
refuses it if it does not match the manifest (a half-copied or edited file). The default
store is `$EXPORTGUARD_FEATURE_STORE`, else `data/feature_store` relative to the working
directory.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from exportguard.errors import ExportguardError
from exportguard.features.registry import FEATURE_NAMES
from exportguard.fileio import ArtifactError, verify_files, write_files, write_manifest
from exportguard.settings import Settings, env_name

log = logging.getLogger(__name__)

STORE_ENV = env_name("feature_store")
DEFAULT_STORE = Settings.model_fields["feature_store"].default
DATA_FILE = "latest.parquet"
MANIFEST_FILE = "latest.json"


class SnapshotError(ExportguardError, ValueError):
    """A feature snapshot is missing, malformed or does not match its manifest."""


def default_store() -> Path:
    """`$EXPORTGUARD_FEATURE_STORE` if set, else `data/feature_store` (relative to the cwd)."""
    return Settings.from_env().feature_store


@dataclass(frozen=True)
class Snapshot:
    """A verified snapshot: the feature frame indexed by account_id and its manifest."""

    frame: pd.DataFrame  # index account_id, columns FEATURE_NAMES (float64, NaN = missing)
    as_of: pd.Timestamp
    sha256: str
    source: str
    written_at: str
    path: Path
    feature_spec: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.frame)

    def lookup(self, account_ids: Iterable[str]) -> tuple[pd.DataFrame, list[str]]:
        """Rows for the known ids (request order, `account_id` column first) and the unknown ids."""
        ids = [str(a) for a in account_ids]
        known = self.frame.index
        found_ids = [a for a in ids if a in known]
        missing = [a for a in ids if a not in known]
        found = self.frame.loc[found_ids].reset_index()
        return found, missing


def _validate_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """account_id + every declared feature as float64; duplicates and infinities refused."""
    if "account_id" not in frame.columns:
        raise SnapshotError("snapshot frame has no account_id column")
    absent = [n for n in FEATURE_NAMES if n not in frame.columns]
    if absent:
        raise SnapshotError(f"snapshot frame lacks {len(absent)} declared feature(s): {absent[:8]}")
    ids = frame["account_id"]
    if ids.isna().any():
        raise SnapshotError("snapshot frame has rows with a null account_id")
    ids = ids.astype(str)
    dup = ids[ids.duplicated()]
    if len(dup):
        raise SnapshotError(f"snapshot frame repeats account_id(s) {list(dup.unique()[:5])}")
    out = pd.DataFrame({"account_id": ids.to_numpy()})
    for name in FEATURE_NAMES:
        try:
            col = pd.to_numeric(frame[name], errors="raise").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        except (TypeError, ValueError) as exc:
            raise SnapshotError(f"snapshot column {name!r} is not numeric ({exc})") from None
        if np.isinf(col).any():
            raise SnapshotError(f"snapshot column {name!r} holds infinite values")
        out[name] = col
    return out


def write_snapshot(
    frame: pd.DataFrame,
    store: Path,
    as_of: pd.Timestamp,
    source: str,
    *,
    feature_spec: dict[str, Any],
) -> Path:
    """Atomically replace the store's latest snapshot; returns the parquet path.

    `feature_spec` is the spec (`scoring.spec`) of the model the features were computed for:
    the service refuses to score a snapshot computed under another spec.
    """
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    clean = _validate_frame(frame)
    as_of = pd.Timestamp(as_of)
    data_path = store / DATA_FILE
    files = write_files(store, {DATA_FILE: lambda fh: clean.to_parquet(fh, index=False)})
    manifest = {
        "as_of": as_of.isoformat(),
        "rows": len(clean),
        "files": files,
        "sha256": files[DATA_FILE],
        "source": str(source),
        "feature_spec": feature_spec,
        "written_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    write_manifest(store / MANIFEST_FILE, manifest)  # last: the snapshot's commit point
    log.info("wrote feature snapshot of %d accounts as of %s to %s", len(clean), as_of, store)
    return data_path


def load_snapshot(store: Path | None = None) -> Snapshot:
    """Read and verify the latest snapshot (sha256 against the manifest)."""
    store = default_store() if store is None else Path(store)
    manifest_path = store / MANIFEST_FILE
    data_path = store / DATA_FILE
    if not manifest_path.is_file() or not data_path.is_file():
        raise SnapshotError(
            f"no feature snapshot at {store} (expected {DATA_FILE} and {MANIFEST_FILE}; "
            f"written by batch rescoring, location set by ${STORE_ENV})"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        expected = str(manifest["sha256"])
        rows = int(manifest["rows"])
        as_of = pd.Timestamp(manifest["as_of"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"{manifest_path}: unreadable snapshot manifest ({exc})") from None
    try:
        verify_files(store, {DATA_FILE: expected}, "feature snapshot")
    except ArtifactError as exc:
        raise SnapshotError(str(exc)) from None
    actual = expected
    try:
        frame = pd.read_parquet(data_path)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise SnapshotError(f"{data_path}: unreadable parquet ({exc})") from None
    clean = _validate_frame(frame)
    if len(clean) != rows:
        raise SnapshotError(f"{data_path}: {len(clean)} rows but the manifest says {rows}")
    return Snapshot(
        frame=clean.set_index("account_id"),
        as_of=as_of,
        sha256=actual,
        source=str(manifest.get("source", "")),
        written_at=str(manifest.get("written_at", "")),
        path=store,
        feature_spec=manifest.get("feature_spec"),
    )
