"""Spread keep-alive connections over the service's worker processes.

BentoML's workers share one listening socket. Whichever worker's event loop is idle when
connections arrive accepts them, and keep-alive connections then stay where they landed:
a burst of new connections can all go to one worker and keep it doing most of the work
while the other idles (measured: one of two workers did ~85% of the CPU work at
concurrency 32). Each worker records its open connections in a small shared table (one
int64 slot per worker in a file made by `exportguard serve`); a worker holding more than
its fair share (total / workers, plus one) answers the next request on one of its
connections with `Connection: close`, so the client reconnects and the connection is
accepted by whichever worker is free first, usually the less loaded one. Clients
reconnect transparently (it is ordinary HTTP/1.1); the cost is one TCP handshake per
moved connection. Off with EXPORTGUARD_BALANCE_CONNECTIONS=0.
"""

from __future__ import annotations

import logging
import mmap
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from exportguard.settings import Settings, env_name

log = logging.getLogger(__name__)

TABLE_ENV = env_name("connection_table")
BALANCE_ENV = env_name("balance_connections")
SLOT = 8


def table_path(port: int) -> Path:
    """One table per port, recreated at every start (so restarts do not leave files)."""
    return Path(tempfile.gettempdir()) / f"exportguard-connections-{port}.bin"


def create_table(port: int, workers: int) -> Path:
    """Zeroed table with one slot per worker; returns its path for the workers' environment."""
    path = table_path(port)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(b"\0" * SLOT * max(1, workers))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def balancing_enabled(environ: Mapping[str, str] | None = None) -> bool:
    return Settings.from_env(environ).balance_connections


class ConnectionTable:
    """This worker's slot (written only by it) and everyone's counts (read)."""

    def __init__(self, path: Path, worker_index: int) -> None:
        with open(path, "r+b") as fh:
            self._map = mmap.mmap(fh.fileno(), 0)
        self.counts = np.frombuffer(self._map, dtype=np.int64)
        if not 0 <= worker_index < len(self.counts):
            raise ValueError(f"worker {worker_index} has no slot in {path} ({len(self.counts)})")
        self.index = worker_index
        self.counts[self.index] = 0

    def add(self, delta: int) -> None:
        self.counts[self.index] += delta

    def over_share(self) -> bool:
        """True when this worker holds more than total / workers + 1 connections."""
        counts = self.counts
        mine = int(counts[self.index])
        return len(counts) > 1 and mine > int(counts.sum()) / len(counts) + 1


def open_table(environ: Mapping[str, str] | None = None) -> ConnectionTable | None:
    """The table of this worker process, or None (one worker, in-process, or balancing off)."""
    settings = Settings.from_env(environ)
    path = settings.connection_table
    if path is None or not settings.balance_connections:
        return None
    from bentoml._internal.context import server_context

    index = server_context.worker_index
    if index is None:
        return None
    try:
        return ConnectionTable(Path(path), int(index) - 1)  # circus numbers workers from 1
    except (OSError, ValueError) as exc:
        log.warning("connection balancing off: %s", exc)
        return None
