"""The audit log: chained appends (threads and processes) and a verifier that finds tampering."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from exportguard.cli import main
from exportguard.serving.audit import GENESIS, AuditError, AuditLog, record_hash, verify


def _records(n: int, start: int = 0) -> list[dict]:
    return [
        {"account_id": f"acc_{start + i}", "score": 0.1 * (i % 10), "band": "low"} for i in range(n)
    ]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def test_appended_records_form_an_intact_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "log.jsonl"
    log = AuditLog(path)
    hashes = log.append(_records(3)) + AuditLog(path).append(
        _records(2, 3)
    )  # reopened: chain continues
    result = verify(path)
    assert result.ok and result.records == 5 and result.last_hash == hashes[-1]
    recs = [json.loads(line) for line in _lines(path)]
    assert recs[0]["prev_hash"] == GENESIS
    assert [r["prev_hash"] for r in recs[1:]] == [r["hash"] for r in recs[:-1]]
    assert all(record_hash(r) == r["hash"] for r in recs)
    assert [r["account_id"] for r in recs] == [f"acc_{i}" for i in range(5)]


def test_interleaved_writers_and_rotation_keep_each_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    first, second = AuditLog(path), AuditLog(path)  # two descriptors, like two workers
    first.append(_records(2))
    second.append(_records(1, 2))  # the first writer's cached tail is now stale
    first.append(_records(2, 3))
    assert verify(path).ok and verify(path).records == 5
    path.rename(tmp_path / "log.1.jsonl")  # rotated away: the next append starts a new file
    first.append(_records(1, 5))
    assert verify(tmp_path / "log.1.jsonl").records == 5
    assert json.loads(_lines(path)[0])["prev_hash"] == GENESIS and verify(path).records == 1
    first.close()
    first.append(_records(1, 6))  # reopened after close
    assert verify(path).ok and verify(path).records == 2


def test_empty_append_writes_nothing(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    assert log.append([]) == []
    assert verify(tmp_path / "a.jsonl").ok and verify(tmp_path / "a.jsonl").records == 0


@pytest.fixture()
def chain(tmp_path: Path) -> Path:
    path = tmp_path / "log.jsonl"
    AuditLog(path).append(_records(5))
    return path


def test_edit_is_reported_at_the_edited_line(chain: Path) -> None:
    lines = _lines(chain)
    rec = json.loads(lines[2])
    rec["score"] = 0.99
    lines[2] = json.dumps(rec) + "\n"
    chain.write_text("".join(lines), encoding="utf-8")
    result = verify(chain)
    assert not result.ok and result.line == 3 and result.records == 2
    assert "edited" in result.reason


def test_deletion_is_reported_where_the_link_breaks(chain: Path) -> None:
    lines = _lines(chain)
    del lines[1]
    chain.write_text("".join(lines), encoding="utf-8")
    result = verify(chain)
    assert not result.ok and result.line == 2 and "prev_hash" in result.reason


def test_reordering_is_reported(chain: Path) -> None:
    lines = _lines(chain)
    lines[3], lines[4] = lines[4], lines[3]
    chain.write_text("".join(lines), encoding="utf-8")
    result = verify(chain)
    assert not result.ok and result.line == 4 and "reordered" in result.reason


def test_garbage_and_torn_lines_are_reported(chain: Path) -> None:
    text = chain.read_text(encoding="utf-8")
    chain.write_text(text + '{"account_id": "x"', encoding="utf-8")
    result = verify(chain)
    assert not result.ok and result.line == 6 and "incomplete" in result.reason
    with pytest.raises(AuditError, match="incomplete"):
        AuditLog(chain).append(_records(1))
    chain.write_text(text + "not json\n", encoding="utf-8")
    result = verify(chain)
    assert not result.ok and result.line == 6 and "JSON" in result.reason


def test_concurrent_thread_appends_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = AuditLog(path)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: log.append(_records(3, 3 * i)), range(40)))
    result = verify(path)
    assert result.ok and result.records == 120


def _append_from_process(path: str, start: int) -> None:
    log = AuditLog(Path(path))
    for i in range(25):
        log.append(_records(2, start + 2 * i))


def test_processes_sharing_one_file_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_from_process, args=(str(path), 1000 * k)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    result = verify(path)
    assert result.ok and result.records == 150


def test_cli_verify_exit_codes(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", str(chain)]) == 0
    assert "intact, 5 record(s)" in capsys.readouterr().out
    lines = _lines(chain)
    chain.write_text("".join(lines[:1] + lines[2:]), encoding="utf-8")
    assert main(["audit", "verify", str(chain)]) == 1
    assert "line 2:" in capsys.readouterr().err
    assert main(["audit", "verify", str(chain.parent / "absent.jsonl")]) == 2
    assert "no such audit log" in capsys.readouterr().err


def test_expected_hash_catches_records_cut_from_the_end(
    chain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hashes = [json.loads(line)["hash"] for line in _lines(chain)]
    assert verify(chain, expect=[hashes[1], hashes[-1]]).ok
    assert main(["audit", "verify", str(chain), "--expect-hash", hashes[-1].upper()]) == 0
    assert "all 1 expected hash(es) present" in capsys.readouterr().out
    chain.write_text("".join(_lines(chain)[:3]), encoding="utf-8")  # last two records cut
    assert verify(chain).ok  # what is left is still a valid chain
    result = verify(chain, expect=[hashes[1], hashes[-1]])
    assert not result.ok and result.line is None and result.records == 3
    assert result.missing == (hashes[-1],) and "cut from its end" in result.reason
    assert main(["audit", "verify", str(chain), "--expect-hash", hashes[-1]]) == 1
    err = capsys.readouterr().err
    assert hashes[-1] in err and "3 record(s) present form an intact chain" in err


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "0" * 63, ""])
def test_cli_refuses_a_malformed_expected_hash(
    chain: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["audit", "verify", str(chain), "--expect-hash", bad])
    assert exc.value.code == 2 and "is not a SHA-256 hash" in capsys.readouterr().err


def test_concurrent_appends_share_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import time

    real_fsync, calls = os.fsync, []

    def slow_fsync(fd: int) -> None:  # a slow disk: callers queue up behind a write
        calls.append(fd)
        time.sleep(0.02)
        real_fsync(fd)

    monkeypatch.setattr("exportguard.serving.audit.os.fsync", slow_fsync)
    log = AuditLog(tmp_path / "log.jsonl")
    with ThreadPoolExecutor(8) as pool:
        hashes = list(pool.map(lambda i: log.append(_records(2, 2 * i)), range(32)))
    result = verify(tmp_path / "log.jsonl")
    assert result.ok and result.records == 64
    assert len(calls) < 32  # grouped: fewer fsyncs than appends
    recs = [json.loads(line) for line in _lines(tmp_path / "log.jsonl")]
    by_account = {r["account_id"]: r["hash"] for r in recs}
    for i, pair in enumerate(hashes):  # each caller got the hashes of its own records
        assert pair == [by_account[f"acc_{2 * i}"], by_account[f"acc_{2 * i + 1}"]]


def test_write_mode_appends_without_fsync_and_flushes_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import threading

    real_fsync, calls = os.fsync, []
    synced = threading.Event()

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)
        synced.set()

    monkeypatch.setattr("exportguard.serving.audit.os.fsync", counting_fsync)
    path = tmp_path / "log.jsonl"
    log = AuditLog(path, sync="write", flush_interval=0.05)
    hashes = [log.append(_records(2, 2 * i)) for i in range(5)]
    # every record is in the file (readable by any process) as soon as append returns
    result = verify(path)
    assert result.ok and result.records == 10 and result.last_hash == hashes[-1][-1]
    assert synced.wait(5), "the background flusher never fsynced"
    assert 1 <= len(calls) < 5  # one background fsync covered several appends
    log.append(_records(1, 100))
    before = len(calls)
    log.close()  # what is still unsynced is synced on close
    assert len(calls) == before + 1
    assert verify(path).records == 11


def test_write_mode_syncs_the_old_file_before_following_a_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    real_fsync, synced_inodes = os.fsync, []

    def recording_fsync(fd: int) -> None:
        synced_inodes.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr("exportguard.serving.audit.os.fsync", recording_fsync)
    path = tmp_path / "log.jsonl"
    log = AuditLog(path, sync="write", flush_interval=3600)
    log.append(_records(3))
    old_inode = path.stat().st_ino
    path.rename(tmp_path / "log.1.jsonl")
    log.append(_records(2, 3))  # reopens the path: a new chain in a new file
    assert synced_inodes == [old_inode]
    assert verify(tmp_path / "log.1.jsonl").records == 3 and verify(path).records == 2
    log.close()


def test_unknown_sync_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="sync mode 'sometimes'"):
        AuditLog(tmp_path / "log.jsonl", sync="sometimes")


def test_verify_hashes_the_bytes_as_written(chain: Path) -> None:
    lines = _lines(chain)
    # same content, other formatting (spaces): no longer the bytes that were hashed
    lines[1] = json.dumps(json.loads(lines[1])) + "\n"
    chain.write_text("".join(lines), encoding="utf-8")
    result = verify(chain)
    assert not result.ok and result.line == 2 and "edited" in result.reason


def test_logs_written_with_the_standard_json_module_still_verify(tmp_path: Path) -> None:
    import hashlib

    path, prev, lines = tmp_path / "old.jsonl", GENESIS, []
    for rec in _records(3) + [{"account_id": "ü", "score": 1e-05, "band": "low"}]:
        body = json.dumps(
            {**rec, "prev_hash": prev}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        prev = hashlib.sha256(body).hexdigest()
        lines.append(body[:-1] + f',"hash":"{prev}"}}\n'.encode())
    path.write_bytes(b"".join(lines))
    result = verify(path)
    assert result.ok and result.records == 4 and result.last_hash == prev
    AuditLog(path).append(_records(1, 9))  # and the chain continues from them
    assert verify(path).records == 5


def test_a_record_json_cannot_hold_is_refused(tmp_path: Path) -> None:
    import numpy as np

    log = AuditLog(tmp_path / "log.jsonl")
    with pytest.raises(AuditError, match="cannot be written as JSON"):
        log.append([{"account_id": "a", "score": np.float32(0.5)}])
    assert (tmp_path / "log.jsonl").read_bytes() == b""
