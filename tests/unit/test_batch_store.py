"""Batch output store: only committed runs are visible, checksums are enforced, ids are stable."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest

from exportguard.batch.store import BatchError, Staging, read_batch_output, run_id_for

SCHEMA = pa.schema([pa.field("account_id", pa.string()), pa.field("score", pa.float64())])
QSCHEMA = pa.schema([pa.field("input_row", pa.int64())])


def _chunk(staging: Staging, index: int, ids: list[str]) -> dict:
    frame = pd.DataFrame({"account_id": ids, "score": [0.5] * len(ids)})
    return staging.write_chunk(
        index, index * 10, len(ids), (frame, SCHEMA), (pd.DataFrame({"input_row": []}), QSCHEMA), {}
    )


def _commit(staging: Staging, metas: list[dict], at: str) -> None:
    parts = [
        {"file": m["part"]["file"], "rows": m["part"]["rows"], "sha256": m["part"]["sha256"]}
        for m in metas
    ]
    staging.commit({"run_id": staging.run_id, "committed_at": at, "parts": parts})


def test_run_id_depends_on_every_parameter_but_not_their_order():
    a = run_id_for({"input": "x", "model": "y", "chunk_rows": 10})
    assert a == run_id_for({"chunk_rows": 10, "model": "y", "input": "x"})
    assert a != run_id_for({"input": "x", "model": "z", "chunk_rows": 10})


def test_staged_chunks_are_invisible_until_the_manifest_commits(tmp_path):
    staging = Staging(tmp_path, "run1").open()
    metas = [_chunk(staging, 0, ["a", "b"]), _chunk(staging, 1, ["c"])]
    with pytest.raises(BatchError, match="no committed batch run"):
        read_batch_output(tmp_path)
    _commit(staging, metas, "2026-01-01T00:00:00")
    assert sorted(read_batch_output(tmp_path)["account_id"]) == ["a", "b", "c"]
    assert not staging.dir.exists() and (tmp_path / "runs" / "run1" / "manifest.json").is_file()


def test_latest_committed_run_is_read_by_default(tmp_path):
    for run_id, at, ids in [
        ("old", "2026-01-01T00:00:00", ["a"]),
        ("new", "2026-02-01T00:00:00", ["b"]),
    ]:
        st = Staging(tmp_path, run_id).open()
        _commit(st, [_chunk(st, 0, ids)], at)
    assert read_batch_output(tmp_path)["account_id"].tolist() == ["b"]
    assert read_batch_output(tmp_path, run_id="old")["account_id"].tolist() == ["a"]


def test_a_changed_part_is_refused_on_read_and_recomputed_on_resume(tmp_path):
    staging = Staging(tmp_path, "run1").open()
    meta = _chunk(staging, 0, ["a"])
    assert staging.finished(0) == json.loads(staging.sidecar(0).read_text())
    (staging.dir / meta["part"]["file"]).write_bytes(b"garbage")
    assert staging.finished(0) is None
    meta = _chunk(staging, 0, ["a"])
    _commit(staging, [meta], "2026-01-01T00:00:00")
    part = tmp_path / "runs" / "run1" / meta["part"]["file"]
    part.write_bytes(part.read_bytes() + b"x")
    with pytest.raises(BatchError, match="sha256 does not match"):
        read_batch_output(tmp_path)


def test_a_chunk_without_sidecar_is_not_finished(tmp_path):
    staging = Staging(tmp_path, "run1").open()
    _chunk(staging, 0, ["a"])
    staging.sidecar(0).unlink()
    assert staging.finished(0) is None


def test_a_live_run_holds_the_staging_lock_and_a_dead_ones_is_taken_over(tmp_path):
    import subprocess
    import sys

    staging = Staging(tmp_path, "run1").open()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (staging.dir / "lock.pid").write_text(str(sleeper.pid))
        with pytest.raises(BatchError, match=f"already in progress .* \\(process {sleeper.pid}\\)"):
            Staging(tmp_path, "run1").open()
    finally:
        sleeper.kill()
        sleeper.wait()
    Staging(tmp_path, "run1").open()  # the holder is gone: the lock is stale
