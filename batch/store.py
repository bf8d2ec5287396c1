"""Where batch output lives, and how it becomes visible: staging, parts, manifest, commit.

Layout under OUT:

    OUT/_staging/<run_id>/part-00003.parquet   scored rows of chunk 3
                          quar-00003.parquet   quarantined rows of chunk 3
                          part-00003.json      sidecar: rows, sha256 of both files, statistics
    OUT/runs/<run_id>/                         a committed run (the staging dir, renamed)
                          manifest.json        written last: parts, row counts, sha256s, model,
                                               input fingerprint, as_of, counts
                          quarantine.parquet   every quarantined row with its reason
                          summary.json, summary.html, plots/*.png

A chunk is finished when its sidecar exists and both files still hash to what it records
(written file -> fsync -> rename -> sidecar last). The run is committed by writing the
manifest into the staging dir and renaming the dir into `runs/` (atomic on one
filesystem); readers only look at `runs/*/manifest.json`, so they never see half a run.
The run id is a digest of everything that determines the output, so rerunning the same
arguments resumes the same staging dir.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from exportguard.digest import json_digest, sha256_file
from exportguard.errors import ExportguardError
from exportguard.fileio import atomic_write

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LOCK = "lock.pid"


class BatchError(ExportguardError, ValueError):
    """A batch run cannot proceed or its output is inconsistent; the message says why."""


def run_id_for(params: dict[str, Any]) -> str:
    """A short digest of the parameters that determine a run's output."""
    return json_digest({"format": FORMAT_VERSION, **params})[:16]


def atomic_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=1, sort_keys=True, default=str).encode()
    atomic_write(path, lambda fh: fh.write(text))


def write_parquet(path: Path, frame: pd.DataFrame, schema: pa.Schema) -> str:
    """Atomically write a frame as Parquet with a fixed schema; returns its sha256."""
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    atomic_write(path, lambda fh: pq.write_table(table, fh))
    return sha256_file(path)


class Staging:
    """One run's staging directory: finished chunks, their sidecars, and the commit."""

    def __init__(self, out: Path, run_id: str) -> None:
        self.out = Path(out)
        self.run_id = run_id
        self.dir = self.out / "_staging" / run_id
        self.final = self.out / "runs" / run_id

    def open(self) -> Staging:
        """Create the staging dir and take its lock (a stale lock of a killed run is taken over)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        lock = self.dir / LOCK
        if lock.is_file():
            try:
                pid = int(lock.read_text(encoding="utf-8").strip())
            except ValueError:
                pid = -1
            if pid != os.getpid() and _alive(pid):
                raise BatchError(
                    f"run {self.run_id} is already in progress in {self.dir} (process {pid}); "
                    "wait for it or stop it before rerunning"
                )
        atomic_write(lock, lambda fh: fh.write(str(os.getpid()).encode()))
        return self

    def sidecar(self, index: int) -> Path:
        return self.dir / f"part-{index:05d}.json"

    def finished(self, index: int) -> dict[str, Any] | None:
        """The chunk's sidecar if both its files exist and match their checksums, else None."""
        path = self.sidecar(index)
        if not path.is_file():
            return None
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            files = [(meta[k]["file"], meta[k]["sha256"]) for k in ("part", "quarantine")]
        except (json.JSONDecodeError, KeyError, TypeError):
            return None
        for name, digest in files:
            f = self.dir / name
            if not f.is_file() or sha256_file(f) != digest:
                log.warning("chunk %d: %s does not match its checksum; recomputing", index, f.name)
                return None
        return meta

    def write_chunk(
        self,
        index: int,
        first_row: int,
        rows_in: int,
        scored: tuple[pd.DataFrame, pa.Schema],
        quarantined: tuple[pd.DataFrame, pa.Schema],
        stats: dict[str, Any],
    ) -> dict[str, Any]:
        """Write a chunk's two files, then its sidecar (the chunk's commit point)."""
        part, quar = f"part-{index:05d}.parquet", f"quar-{index:05d}.parquet"
        meta = {
            "index": index,
            "first_row": first_row,
            "rows_in": rows_in,
            "part": {
                "file": part,
                "rows": len(scored[0]),
                "sha256": write_parquet(self.dir / part, *scored),
            },
            "quarantine": {
                "file": quar,
                "rows": len(quarantined[0]),
                "sha256": write_parquet(self.dir / quar, *quarantined),
            },
            "stats": stats,
        }
        atomic_json(self.sidecar(index), meta)
        return meta

    def committed(self) -> dict[str, Any] | None:
        """The manifest of this run if it is already committed."""
        path = self.final / MANIFEST
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def commit(self, manifest: dict[str, Any]) -> Path:
        """Write the manifest last, then move the staging dir into runs/ in one rename."""
        atomic_json(self.dir / MANIFEST, manifest)
        (self.dir / LOCK).unlink(missing_ok=True)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        if self.final.exists():  # a leftover without manifest (never visible to readers)
            shutil.rmtree(self.final)
        os.replace(self.dir, self.final)
        _fsync_dir(self.final.parent)
        return self.final


def _alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def committed_runs(out: Path) -> list[dict[str, Any]]:
    """Manifests of the committed runs under OUT, oldest commit first."""
    runs = []
    for path in sorted((Path(out) / "runs").glob(f"*/{MANIFEST}")):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BatchError(f"{path}: unreadable manifest ({exc})") from None
        manifest["_dir"] = str(path.parent)
        runs.append(manifest)
    return sorted(runs, key=lambda m: (m.get("committed_at", ""), m.get("run_id", "")))


def read_batch_output(
    out: Path,
    run_id: str | None = None,
    columns: list[str] | None = None,
    quarantine: bool = False,
    verify: bool = True,
) -> pd.DataFrame:
    """Rows of a committed run (the latest by default); parts are checked against the manifest."""
    runs = committed_runs(out)
    if run_id is not None:
        runs = [m for m in runs if m["run_id"] == run_id]
    if not runs:
        which = f"run {run_id}" if run_id else "run"
        raise BatchError(f"{out}: no committed batch {which} (no runs/*/{MANIFEST})")
    manifest = runs[-1]
    base = Path(manifest["_dir"])
    files = [manifest["quarantine"]] if quarantine else manifest["parts"]
    tables = []
    for entry in files:
        path = base / entry["file"]
        if verify and sha256_file(path) != entry["sha256"]:
            raise BatchError(f"{path}: sha256 does not match the run's manifest")
        tables.append(pq.read_table(path, columns=columns))
    if not tables:
        return pd.DataFrame(columns=columns or [])
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()
