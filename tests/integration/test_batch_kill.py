"""A real SIGKILL in the middle of a batch run, then a rerun: exactly one row per input account."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exportguard.batch.store import read_batch_output

from factories import make_feature_table


def _command(features: Path, out: Path, model: Path) -> list[str]:
    return [
        sys.executable, "-m", "exportguard.cli", "batch", "--features", str(features),
        "--out", str(out), "--model", str(model), "--as-of", "2026-10-01",
        "--chunk-rows", "400", "--no-snapshot", "--threads", "1",
    ]  # fmt: skip


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_gives_exactly_one_row_per_account(tiny_bundle, tmp_path):
    frame = make_feature_table(24_000, seed=21)
    features = tmp_path / "features.parquet"
    frame.to_parquet(features, row_group_size=4000)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_command(features, out, tiny_bundle), env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    sidecars: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        sidecars = list(out.glob("_staging/*/part-*.json"))
        if len(sidecars) >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed: make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "runs").exists(), "nothing may be visible after a kill"
    with pytest.raises(Exception, match="no committed batch run"):
        read_batch_output(out)

    done = subprocess.run(
        _command(features, out, tiny_bundle), env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    skipped = re.search(r"skipped (\d+) of 60 chunks", done.stderr)
    assert skipped and int(skipped.group(1)) >= len(sidecars)
    result = read_batch_output(out)
    assert len(result) == len(frame)
    assert sorted(result["account_id"]) == sorted(frame["account_id"])
    assert result["account_id"].is_unique
