"""Append-only, hash-chained JSON-lines audit log of scored decisions, and its verifier.

Each line is one decision: the record's canonical JSON (sorted keys, no spaces) with its
`hash` added as the last key. `prev_hash` is the previous line's `hash` (64 zeros for the
first line); `hash` is the sha256 of the line's bytes without the `hash` key, i.e. of
the record's JSON exactly as written (`verify` hashes those bytes, so it does not depend
on how a JSON library formats numbers). An edit changes a record's bytes, a deletion or
reordering breaks a `prev_hash` link, so `verify` names the first line that does not fit. (Removing lines at the very end leaves a
valid shorter chain: keep the last hash `verify` prints somewhere else to detect that.)

Appends are safe across threads (a lock) and across processes sharing the file (several
service workers): each append takes an exclusive `fcntl.flock` on the log's descriptor
(kept open; reopened when the path names a new file), reads the chain's last hash from
the file itself (unless the file is exactly as this process left it) and writes before
releasing it. A request's records are appended before its response is sent.

Durability (`sync`, from EXPORTGUARD_AUDIT_SYNC in the service):

- ``fsync`` (default): every append returns only once its records are fsynced, so an
  answered decision survives a crash of the host or a power cut.
- ``write``: every append returns once its records are written to the file (the kernel
  holds them), so an answered decision survives the service being killed or crashing;
  a background thread fsyncs every `flush_interval` seconds (1 s by default), so a crash
  of the whole host can lose at most the decisions of that last interval: the trade
  auditd's asynchronous flush makes, for disks whose fsync is slow (bench/serve.py
  measures both modes).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from exportguard.errors import ExportguardError
from exportguard.settings import AUDIT_SYNC_MODES, Settings, env_name

log = logging.getLogger(__name__)

AUDIT_ENV = env_name("audit_log")
DEFAULT_AUDIT_LOG = Settings.model_fields["audit_log"].default
SYNC_ENV = env_name("audit_sync")
#: Durability modes: fsync every append (default), or write now and fsync in the background.
SYNC_MODES = AUDIT_SYNC_MODES
DEFAULT_FLUSH_INTERVAL_S = 1.0
GENESIS = "0" * 64
_TAIL_BYTES = 16 * 1024  # a record is ~3 KB; the read grows until it holds a whole line


class AuditError(ExportguardError):
    """The audit log cannot be opened, read or appended to."""


def default_audit_path() -> Path:
    """`$EXPORTGUARD_AUDIT_LOG` if set, else `audit/decisions.jsonl` (relative to the cwd)."""
    return Settings.from_env().audit_log


def canonical(record: dict[str, Any]) -> bytes:
    """A record's bytes as written: JSON with sorted keys, no spaces, UTF-8 (orjson)."""
    try:
        return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:  # orjson.JSONEncodeError: a value JSON cannot hold
        raise AuditError(f"audit record cannot be written as JSON: {exc}") from None


#: The end of every line: the hash of the bytes before it (with the closing brace).
_HASH_SUFFIX = re.compile(rb',"hash":"([0-9a-f]{64})"\}\n\Z')


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


def _last_hash(fd: int, size: int, name: Path) -> str:
    """The `hash` of the last line of the `size` bytes open at `fd` (GENESIS when empty)."""
    if size == 0:
        return GENESIS
    start = max(0, size - _TAIL_BYTES)
    while True:
        tail = os.pread(fd, size - start, start)
        lines = tail.rstrip(b"\n").split(b"\n")
        if len(lines) > 1 or start == 0:
            break
        start = max(0, start - _TAIL_BYTES)
    if not tail.endswith(b"\n"):
        raise AuditError(
            f"{name}: last line is incomplete (torn write); run `exportguard audit verify`"
        )
    try:
        return str(json.loads(lines[-1])["hash"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise AuditError(
            f"{name}: last line is not an audit record; run `exportguard audit verify`"
        ) from None


class _Pending:
    """One caller's records waiting for a group commit."""

    __slots__ = ("records", "hashes", "error", "done")

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.hashes: list[str] = []
        self.error: BaseException | None = None
        self.done = False


class AuditLog:
    """Appends records to one chained log file; safe for threads and for processes sharing it.

    Group commit: callers that arrive while a write is in progress queue up; the next one
    to run writes every queued caller's records with one write and one fsync, and each
    caller returns only once its own records are on disk. Concurrent requests thus share
    an fsync instead of paying one each, and the chain order is the commit order.
    """

    def __init__(
        self, path: Path, sync: str = "fsync", flush_interval: float = DEFAULT_FLUSH_INTERVAL_S
    ) -> None:
        if sync not in SYNC_MODES:
            raise AuditError(f"audit sync mode {sync!r}: expected one of {', '.join(SYNC_MODES)}")
        if not flush_interval > 0:
            raise AuditError(f"audit flush interval {flush_interval!r}: must be > 0 seconds")
        self.path = Path(path)
        self.sync = sync
        self.flush_interval = flush_interval
        self._dirty = False  # written but not yet fsynced (write mode)
        self._flusher: threading.Thread | None = None
        self._closing = threading.Event()
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._writing = False
        # (device, inode, size) of the file after this process's last write, and its last
        # hash: while nobody else has appended, the next write need not re-read the tail.
        self._tail: tuple[tuple[int, int, int], str] | None = None
        self._fd: int | None = None  # kept open; reopened if the path names another file
        self._fd_id: tuple[int, int] | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._descriptor()  # fail at start-up, not on the first request
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                _last_hash(fd, os.fstat(fd).st_size, self.path)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError as exc:
            raise AuditError(
                f"audit log {self.path}: cannot open for appending ({exc.strerror})"
            ) from None

    def _descriptor(self) -> int:
        """The append descriptor, reopened when the path now names another file (rotation)."""
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if self._fd is not None and current == self._fd_id:
            return self._fd
        if self._fd is not None:
            if self._dirty:  # write mode: what went to the rotated-away file is synced first
                os.fsync(self._fd)
                self._dirty = False
            os.close(self._fd)
            self._fd = None
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        st = os.fstat(fd)
        self._fd, self._fd_id = fd, (st.st_dev, st.st_ino)
        return fd

    def close(self) -> None:
        """Fsync what is still unsynced, stop the flusher, close the descriptor.

        The next append reopens the descriptor (and restarts the flusher in write mode).
        """
        self._closing.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        self._closing.clear()
        self.flush()
        with self._cond:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = self._fd_id = None

    def flush(self) -> None:
        """Fsync records written since the last fsync (write mode); nothing to do otherwise."""
        with self._cond:
            while self._writing:  # take the writer's turn: no descriptor swap meanwhile
                self._cond.wait()
            if not self._dirty or self._fd is None:
                return
            self._writing, self._dirty = True, False
            fd = self._fd
        try:
            os.fsync(fd)
        except OSError as exc:
            self._dirty = True
            log.error("audit log %s: background fsync failed: %s", self.path, exc)
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()

    def _flush_periodically(self) -> None:
        while not self._closing.wait(self.flush_interval):
            self.flush()

    def _start_flusher(self) -> None:
        """Write mode: one daemon thread per process fsyncs every `flush_interval` seconds."""
        if self._flusher is None or not self._flusher.is_alive():
            self._flusher = threading.Thread(
                target=self._flush_periodically, name="audit-flush", daemon=True
            )
            self._flusher.start()

    def append(self, records: Iterable[dict[str, Any]]) -> list[str]:
        """Chain and write the records (and fsync them in fsync mode); returns their hashes."""
        mine = _Pending(list(records))
        if not mine.records:
            return []
        if self.sync == "write":
            self._start_flusher()
        with self._cond:
            self._pending.append(mine)
            while self._writing and not mine.done:
                self._cond.wait()
            if not mine.done:  # nobody is writing: write everything queued, ours included
                self._writing = True
                group, self._pending = self._pending, []
        if not mine.done:
            error: BaseException | None = None
            try:
                self._write(group)
            except BaseException as exc:  # every caller in the group gets the failure
                error = exc
            with self._cond:
                for entry in group:
                    entry.error, entry.done = error, True
                self._writing = False
                self._cond.notify_all()
        if mine.error is not None:
            if isinstance(mine.error, AuditError | OSError):
                raise mine.error
            raise AuditError(f"audit log {self.path}: append failed ({mine.error})")
        return mine.hashes

    def _write(self, group: list[_Pending]) -> None:
        """One locked, chained write and one fsync for the whole group."""
        fd = self._descriptor()
        fcntl.flock(fd, fcntl.LOCK_EX)  # other worker processes append to the same chain
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino, st.st_size)
            if self._tail and self._tail[0] == key:
                prev = self._tail[1]
            else:
                prev = _last_hash(fd, st.st_size, self.path)
            lines: list[bytes] = []
            for entry in group:
                entry.hashes = []
                for rec in entry.records:
                    rec = {k: v for k, v in rec.items() if k not in ("prev_hash", "hash")}
                    rec["prev_hash"] = prev
                    body = canonical(rec)  # serialised once: hashed, then written
                    prev = hashlib.sha256(body).hexdigest()
                    lines.append(b'%s,"hash":"%s"}\n' % (body[:-1], prev.encode()))
                    entry.hashes.append(prev)
            data = memoryview(b"".join(lines))
            while data:  # O_APPEND: every write lands at the end
                data = data[os.write(fd, data) :]
            if self.sync == "fsync":
                os.fsync(fd)
            else:
                self._dirty = True  # the flusher fsyncs it within flush_interval
            st = os.fstat(fd)
            self._tail = ((st.st_dev, st.st_ino, st.st_size), prev)
        except BaseException:
            self._tail = None
            raise
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    records: int  # records checked and found intact
    last_hash: str
    line: int | None = None  # first broken line (1-based); None when the chain is intact
    reason: str = ""
    missing: tuple[str, ...] = ()  # expected hashes not found in an intact chain


def verify(path: Path, expect: Collection[str] = ()) -> VerifyResult:
    """Walk the chain; stop at the first line that is unreadable, edited or out of place.

    The chain alone cannot show records cut from the end of the log (what is left is
    still a valid chain), nor a log replaced by a new, self-consistent one. `expect`
    closes that gap: hashes noted earlier, outside the log (e.g. the last hash each
    nightly verify printed), that must all be present; an intact chain missing any of
    them is reported as not ok, with `missing` naming them.
    """
    path = Path(path)
    if not path.is_file():
        raise AuditError(f"{path}: no such audit log")
    wanted = set(expect)
    prev, count = GENESIS, 0
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                return VerifyResult(False, count, prev, n, "incomplete last line (torn write)")
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as exc:
                return VerifyResult(False, count, prev, n, f"not valid JSON ({exc.msg})")
            if not isinstance(rec, dict) or "hash" not in rec or "prev_hash" not in rec:
                return VerifyResult(
                    False, count, prev, n, "not an audit record (no hash / prev_hash)"
                )
            if rec["prev_hash"] != prev:
                return VerifyResult(
                    False,
                    count,
                    prev,
                    n,
                    "prev_hash does not match the previous record's hash "
                    "(a record was deleted, inserted or reordered before this line)",
                )
            suffix = _HASH_SUFFIX.search(raw)
            if (
                suffix is None
                or suffix.group(1).decode() != rec["hash"]
                or hashlib.sha256(raw[: suffix.start()] + b"}").hexdigest() != rec["hash"]
            ):
                return VerifyResult(
                    False,
                    count,
                    prev,
                    n,
                    "hash does not match the record's content (the record was edited)",
                )
            prev, count = rec["hash"], count + 1
            wanted.discard(prev)
    if wanted:
        missing = tuple(sorted(wanted))
        return VerifyResult(
            False,
            count,
            prev,
            None,
            f"{len(missing)} expected record(s) not in the log, e.g. hash {missing[0]}: "
            "records were cut from its end, or it was replaced",
            missing,
        )
    return VerifyResult(True, count, prev)
