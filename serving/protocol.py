"""Connection guards below HTTP parsing: header/idle deadline, connections per IP, spreading.

uvicorn (BentoML's HTTP server) has a keep-alive timeout only after a response: a
connection that sends nothing, or one header byte every few seconds, is held open for
ever, and the ASGI guard never sees it because no request is complete. This protocol
subclass closes a connection that has not completed a request's headers within
EXPORTGUARD_HEADER_TIMEOUT_S (10 s) of opening or of its previous response, and refuses
(503, closed) a client IP's connections beyond EXPORTGUARD_MAX_CONNECTIONS_PER_IP (256)
open on one worker. A request whose headers are complete is governed by the service's
own timeouts instead. It also spreads keep-alive connections over the workers
(serving/balance.py). `install()` makes it uvicorn's "auto" HTTP protocol; the service
module calls it when the worker imports it, before uvicorn resolves the protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from exportguard.serving.balance import ConnectionTable, balancing_enabled, open_table
from exportguard.settings import Settings, env_name

log = logging.getLogger(__name__)

HEADER_TIMEOUT_ENV = env_name("header_timeout_s")
MAX_PER_IP_ENV = env_name("max_connections_per_ip")
DEFAULT_HEADER_TIMEOUT_S = Settings.model_fields["header_timeout_s"].default
DEFAULT_MAX_PER_IP = Settings.model_fields["max_connections_per_ip"].default
TICK_S = 0.5

_BUSY = {"body": json.dumps({"error": "too many connections from this address", "code": "too_many_connections"})}  # fmt: skip


def connection_limits(environ: Mapping[str, str] | None = None) -> tuple[float, int]:
    """(header timeout in seconds, connections per client IP) from the environment."""
    s = Settings.from_env(environ)
    return s.header_timeout_s, s.max_connections_per_ip


class GuardedHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol plus a header/idle deadline and a per-IP connection limit."""

    header_timeout_s = DEFAULT_HEADER_TIMEOUT_S
    max_per_ip = DEFAULT_MAX_PER_IP
    open_per_ip: Counter[str] = Counter()  # this worker's open connections per client IP
    balance = True
    table: ConnectionTable | None = None  # shared connection counts (serving/balance.py)
    _table_opened = False

    @property
    def cycle(self) -> Any:
        return self.__dict__.get("_eg_cycle")

    @cycle.setter
    def cycle(self, value: Any) -> None:
        """A new request: answer it with `Connection: close` if this worker holds too many."""
        self.__dict__["_eg_cycle"] = value
        table = type(self).table
        if (
            value is not None
            and table is not None
            and self.__dict__.get("_eg_counted")
            and table.over_share()
        ):
            value.keep_alive = False
            self.__dict__["_eg_counted"] = False  # counted as gone now, so one moves at a time
            table.add(-1)

    @classmethod
    def _shared_table(cls) -> ConnectionTable | None:
        if not cls._table_opened:  # in the worker, once its index is known
            cls._table_opened = True
            cls.table = open_table() if cls.balance else None
        return cls.table

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._eg_ip = self.client[0] if self.client else "-"
        self._eg_timer: asyncio.TimerHandle | None = None
        self._eg_counted = False
        if self.open_per_ip[self._eg_ip] >= self.max_per_ip:
            log.info("refused a connection from %s: %d open", self._eg_ip, self.max_per_ip)
            body = _BUSY["body"].encode()
            transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            transport.close()
            self._eg_ip = None
            return
        self.open_per_ip[self._eg_ip] += 1
        table = self._shared_table()
        if table is not None:
            table.add(1)
            self._eg_counted = True
        self._eg_seen: Any = None
        self._eg_since = self.loop.time()
        self._eg_timer = self.loop.call_later(TICK_S, self._eg_tick)

    def _eg_tick(self) -> None:
        """Close the connection when no request headers arrived within the deadline."""
        if self.transport.is_closing():
            return
        now = self.loop.time()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            self._eg_since = now  # a request is in flight: the service's timeouts apply
        elif cycle is not self._eg_seen:
            self._eg_seen, self._eg_since = cycle, now  # a request finished since last tick
        elif now - self._eg_since >= self.header_timeout_s:
            log.info(
                "closed a connection from %s: no complete request headers in %.1f s",
                self._eg_ip,
                self.header_timeout_s,
            )
            self.transport.close()
            return
        self._eg_timer = self.loop.call_later(TICK_S, self._eg_tick)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._eg_timer is not None:
            self._eg_timer.cancel()
        if self._eg_counted and self.table is not None:
            self.table.add(-1)
            self._eg_counted = False
        if self._eg_ip is not None:
            self.open_per_ip[self._eg_ip] -= 1
            if self.open_per_ip[self._eg_ip] <= 0:
                del self.open_per_ip[self._eg_ip]
            self._eg_ip = None
        super().connection_lost(exc)


def install(environ: Mapping[str, str] | None = None) -> None:
    """Make GuardedHTTPProtocol uvicorn's "auto" protocol, with limits from the environment."""
    import uvicorn.config

    timeout, limit = connection_limits(environ)
    GuardedHTTPProtocol.header_timeout_s = timeout
    GuardedHTTPProtocol.max_per_ip = limit
    GuardedHTTPProtocol.balance = balancing_enabled(environ)
    uvicorn.config.HTTP_PROTOCOLS["auto"] = f"{__name__}:GuardedHTTPProtocol"
