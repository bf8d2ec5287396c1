"""Audit and readiness: every answered decision is in the chained log, nothing else; start-up checks."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from serving_support import AUTH, OTHER_TOKEN, account_rows, rows_frame, running_app, service_env

from exportguard.features.policy import Policy
from exportguard.features.registry import FEATURE_NAMES
from exportguard.scoring.bundle import BundleError
from exportguard.scoring.spec import code_spec
from exportguard.serving.audit import verify
from exportguard.serving.engine import Engine, RequestFailed, RequestInfo, StartupError
from exportguard.serving.schemas import ScoreAccountsRequest, ScoreRequest
from exportguard.serving.settings import ServeSettings
from exportguard.serving.snapshot import write_snapshot

#: the feature spec of the test bundle (the default policy)
SPEC = code_spec(Policy())

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _audit_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("sync", ["fsync", "write"])
def test_audit_records_equal_successful_responses(
    tiny_bundle: Path, tmp_path: Path, sync: str
) -> None:
    env = service_env(tiny_bundle, tmp_path, EXPORTGUARD_AUDIT_SYNC=sync)
    audit_path = Path(env["EXPORTGUARD_AUDIT_LOG"])
    rows = account_rows(40, seed=5)
    write_snapshot(
        rows_frame(rows), tmp_path / "store", pd.Timestamp("2026-06-01"), "t", feature_spec=SPEC
    )
    bob = {"Authorization": f"Bearer {OTHER_TOKEN}"}

    def call(i: int) -> Any:
        if i % 5 == 0:  # invalid: must leave no record
            return client.post(
                "/score", json={"accounts": [{"account_id": "x", "surprise": 1}]}, headers=AUTH
            )
        if i % 5 == 1:  # by id, with one unknown id (a per-item error, not a decision)
            ids = [rows[i % 40]["account_id"], f"ghost_{i}"]
            return client.post("/score_accounts", json={"account_ids": ids}, headers=bob)
        if i % 5 == 2:  # unauthenticated: no record
            return client.post("/score", json={"accounts": rows[:2]})
        size = 1 + i % 7
        return client.post("/score", json={"accounts": rows[i % 30 : i % 30 + size]}, headers=AUTH)

    with running_app(env) as client:
        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(call, range(120)))

    ok = [r.json() for r in responses if r.status_code == 200]
    assert len(ok) == 72 and all(r.status_code in (200, 400, 401) for r in responses)
    answered = sorted(
        (b["request_id"], res["account_id"], res["score"]) for b in ok for res in b["results"]
    )
    records = _audit_lines(audit_path)
    audited = sorted((r["request_id"], r["account_id"], r["score"]) for r in records)
    assert audited == answered
    result = verify(audit_path)
    assert result.ok and result.records == len(records)
    by_key = {(r["request_id"], r["account_id"]): r for r in records}
    for body in ok:
        for res in body["results"]:
            rec = by_key[(body["request_id"], res["account_id"])]
            assert rec["model"] == body["model"] and rec["band"] == res["band"]
            assert rec["raw_score"] == res["raw_score"] and rec["reasons"] == res["reasons"]
            assert set(rec["features"]) == set(FEATURE_NAMES)
    assert {r["caller"] for r in records} == {"alice", "bob"}
    assert (
        OTHER_TOKEN not in audit_path.read_text()
        and AUTH["Authorization"][7:] not in audit_path.read_text()
    )
    assert {r["endpoint"] for r in records} == {"score", "score_accounts"}
    assert all("snapshot" in r for r in records if r["endpoint"] == "score_accounts")


# --- the engine directly: readiness and refusals ---------------------------------------------


def _settings(bundle: Path, work: Path, deadline_s: float = 20.0) -> ServeSettings:
    return ServeSettings(
        model_path=bundle,
        feature_store=work / "store",
        audit_log=work / "audit.jsonl",
        deadline_s=deadline_s,
    )


def _info() -> RequestInfo:
    return RequestInfo("req-test-0001", "alice", time.monotonic(), "score")


def _request(n: int = 2) -> ScoreRequest:
    return ScoreRequest.model_validate({"accounts": account_rows(n)})


def test_engine_is_ready_only_after_start(tiny_bundle: Path, tmp_path: Path) -> None:
    engine = Engine(_settings(tiny_bundle, tmp_path))
    assert not engine.ready
    with pytest.raises(RequestFailed) as err:
        engine.score(_request(), _info())
    assert err.value.status == 503 and err.value.code == "not_ready"
    engine.start()
    assert engine.ready and len(engine.score(_request(), _info()).results) == 2


def test_tampered_bundle_never_becomes_ready(tiny_bundle: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    (copy / "calibration.json").write_text('{"method": "isotonic", "x": [0, 1], "y": [0, 1]}')
    engine = Engine(_settings(copy, tmp_path))
    with pytest.raises(BundleError, match="calibration.json"):
        engine.start()
    assert not engine.ready


def test_failed_additivity_check_refuses_to_start(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exportguard.scoring.scorer import Scorer

    monkeypatch.setattr(Scorer, "additivity_error", lambda self, frame: 0.5)
    engine = Engine(_settings(tiny_bundle, tmp_path))
    with pytest.raises(StartupError, match="do not add up"):
        engine.start()
    assert not engine.ready


def test_late_request_is_refused_and_not_audited(tiny_bundle: Path, tmp_path: Path) -> None:
    engine = Engine(_settings(tiny_bundle, tmp_path, deadline_s=1e-9))
    engine.start()
    with pytest.raises(RequestFailed) as err:
        engine.score(_request(), _info())
    assert err.value.code == "deadline_exceeded" and _audit_lines(tmp_path / "audit.jsonl") == []


def test_audit_failure_withholds_the_score(tiny_bundle: Path, tmp_path: Path) -> None:
    engine = Engine(_settings(tiny_bundle, tmp_path))
    engine.start()

    class BrokenLog:
        def append(self, records: Any) -> list[str]:
            raise OSError(28, "No space left on device")

    engine.audit = BrokenLog()  # type: ignore[assignment]
    with pytest.raises(RequestFailed) as err:
        engine.score(_request(), _info())
    assert err.value.status == 503 and err.value.code == "audit_unavailable"


def test_snapshot_is_reloaded_when_rewritten(tiny_bundle: Path, tmp_path: Path) -> None:
    engine = Engine(_settings(tiny_bundle, tmp_path))
    engine.start()
    first, second = account_rows(3, seed=1), account_rows(3, seed=2)
    write_snapshot(
        rows_frame(first), tmp_path / "store", pd.Timestamp("2026-06-01"), "a", feature_spec=SPEC
    )
    req = ScoreAccountsRequest(account_ids=[second[0]["account_id"]])
    assert engine.score_accounts(req, _info()).errors[0].code == "unknown_account"
    time.sleep(0.01)
    write_snapshot(
        rows_frame(second), tmp_path / "store", pd.Timestamp("2026-06-08"), "b", feature_spec=SPEC
    )
    resp = engine.score_accounts(req, _info())
    assert len(resp.results) == 1 and resp.snapshot.as_of.startswith("2026-06-08")
