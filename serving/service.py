"""The BentoML service: thin HTTP adapter over `engine.Engine` (start with `exportguard serve`).

Endpoints: POST /score, POST /score_accounts, GET /metadata (token required); GET /livez,
/healthz (process alive) and /readyz (200 only once the bundle's hashes were verified and
the warm-up additivity check passed) stay open.

Traffic settings, chosen deliberately:

- No adaptive batching. Callers already send up to MAX_ACCOUNTS accounts per request, and
  the cost is exact TreeSHAP per row, linear in rows: merging requests saves only the
  small per-call overhead while adding queueing delay, and BentoML's batch dispatcher
  sheds load with 503s once its `max_latency_ms` is tight. Bench: bench/serve.py.
- Small /score requests (at most INLINE_MAX_ACCOUNTS accounts, a few ms of CPU) are
  scored on the event loop itself: no thread hand-off, requests are served in arrival
  order, and a worker busy scoring is slower to accept new connections, so connections
  spread over the workers (on BentoML's shared socket an idle loop takes every pending
  connection). In bench/serve.py this cut the p99 at concurrency 16 from 85-290 ms to
  81-105 ms. Larger requests and /score_accounts (which may reload the snapshot from
  disk) are scored in a request thread (at most REQUEST_THREADS) holding the worker's one
  scoring slot (SCORING_THREADS: scoring is CPU-bound and holds the GIL, so more threads
  per process only contend; run one worker per core, `exportguard serve --workers N`).
- With the default audit durability (EXPORTGUARD_AUDIT_SYNC=fsync) the audit commit
  runs in a request thread, outside the scoring slot, so neither the loop nor the slot
  waits on the disk, and commits that arrive together share one fsync (AuditLog's group
  commit). With `write` durability the commit of a small request is a write to the
  log file (tens of microseconds) and stays on the event loop, saving the two thread
  hand-offs; the background fsync, once a second, can hold it for one fsync. With
  `fsync` durability a small request's commit also stays on the loop when it is the
  worker's only request in flight: there is nothing to overlap the fsync with or to
  group it with, and the hand-offs would only add to its latency.
- Connections (serving/protocol.py): closed when no request headers complete within
  EXPORTGUARD_HEADER_TIMEOUT_S (10 s) of opening or of the previous answer; at most
  EXPORTGUARD_MAX_CONNECTIONS_PER_IP (256) open per client address and worker.
- `max_concurrency=256` per service bounds requests in flight (the excess gets 429 at
  once rather than queueing without limit); `timeout=30` s answers 504 for a stuck
  request, and the engine refuses to score (503, nothing audited) a request that has
  already waited past EXPORTGUARD_REQUEST_DEADLINE_S (20 s by default), so a decision
  is audited after its caller got a 504 only if its own fsync took over 10 s.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import bentoml
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exportguard.serving.engine import Engine, Prepared, RequestFailed, RequestInfo
from exportguard.serving.middleware import SCOPE_KEY, GuardMiddleware
from exportguard.serving.protocol import install as install_connection_guards
from exportguard.serving.schemas import (
    MAX_BODY_BYTES,
    ScoreAccountsRequest,
    ScoreAccountsResponse,
    ScoreRequest,
    ScoreResponse,
)
from exportguard.serving.settings import SERVICE_NAME, ServeSettings
from exportguard.telemetry import disable_telemetry

log = logging.getLogger(__name__)

BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"
TRAFFIC = {"timeout": 30, "max_concurrency": 256}
SCORING_THREADS = 1
REQUEST_THREADS = 64
INLINE_MAX_ACCOUNTS = 4


def _error(exc: RequestFailed, ctx: bentoml.Context | None = None) -> Any:
    """A JSON error response, returned rather than raised: BentoML would replace the body."""
    request_id = ctx.request.scope.get(SCOPE_KEY, {}).get("request_id") if ctx else None
    log.warning("%s not answered (%d %s): %s", request_id or "-", exc.status, exc.code, exc.message)
    if ctx is not None:  # BentoML copies the context's status onto a returned response
        ctx.response.status_code = exc.status
    return JSONResponse({"error": exc.message, "code": exc.code}, status_code=exc.status)


class RejectedBodyLogFilter(logging.Filter):
    """BentoML logs a traceback at ERROR for every rejected request body; log one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "%s [%s] rejected (400): %d validation error(s), first at %s"
            first = exc.errors(include_input=False)[0]
            given = record.args if isinstance(record.args, tuple) else ()
            record.args = (*given[:2], exc.error_count(), first.get("loc"))
            record.exc_info = record.exc_text = None
        return True


def _log_like_bentoml() -> None:
    """Send this package's log records to BentoML's server handlers (it configures only its own)."""
    ours, theirs = logging.getLogger("exportguard"), logging.getLogger("bentoml")
    if ours.handlers or not theirs.handlers:
        return
    for handler in theirs.handlers:
        ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False


def _info(ctx: bentoml.Context, endpoint: str) -> RequestInfo:
    tag = ctx.request.scope[SCOPE_KEY]  # set by GuardMiddleware, which runs for every request
    return RequestInfo(tag["request_id"], tag["caller"], tag["started"], endpoint)


async def _metadata(request: Request) -> JSONResponse:
    """GET /metadata: model version, sha256, training metrics, feature list with descriptions."""
    svc = bentoml.get_current_service()
    try:
        return JSONResponse(svc.engine.metadata().model_dump(mode="json"))
    except RequestFailed as exc:
        return _error(exc)


_routes = Starlette(routes=[Route("/metadata", _metadata, methods=["GET"])])


@bentoml.asgi_app(_routes, path="/", name="exportguard-metadata")
@bentoml.service(
    name=SERVICE_NAME,
    workers=1,
    traffic=TRAFFIC,
    endpoints={"livez": "/livez", "readyz": "/readyz"},
)
class ExportGuard:
    """Explained circumvention scores for the provider's own services, authenticated and audited."""

    def __init__(self) -> None:
        disable_telemetry()
        _log_like_bentoml()
        bentoml_log = logging.getLogger(BENTOML_HTTP_LOGGER)
        if not any(isinstance(f, RejectedBodyLogFilter) for f in bentoml_log.filters):
            bentoml_log.addFilter(RejectedBodyLogFilter())
        self.engine = Engine(ServeSettings.from_env())
        self._scoring = threading.BoundedSemaphore(SCORING_THREADS)
        self._threads: anyio.CapacityLimiter | None = None
        self._in_flight = 0  # scoring requests in this worker (event-loop thread only)

    @bentoml.on_startup
    def verify_and_warm_up(self) -> None:
        """Load and verify the bundle, open the audit log, warm up; failure stops the server.

        Then everything alive so far (model, modules, caches) is moved out of the garbage
        collector's reach (`gc.freeze`): otherwise every full collection walks it, and
        those pauses were the slowest 1% of answers under load.
        """
        self.engine.start()
        gc.collect()
        gc.freeze()

    def __is_ready__(self) -> bool:
        return self.engine.ready

    def _limiter(self) -> anyio.CapacityLimiter:
        if self._threads is None:  # created on first use, inside the server's event loop
            self._threads = anyio.CapacityLimiter(REQUEST_THREADS)
        return self._threads

    def _prepare_and_commit(
        self,
        prepare: Callable[[Any, RequestInfo], Prepared[Any]],
        request: Any,
        info: RequestInfo,
    ) -> BaseModel:
        """In a request thread: score while holding a scoring slot, then commit without it."""
        with self._scoring:
            prepared = prepare(request, info)
        return self.engine.commit(info, prepared)

    async def _answer(
        self,
        prepare: Callable[[Any, RequestInfo], Prepared[Any]],
        request: Any,
        info: RequestInfo,
        inline: bool = False,
    ) -> Response:
        """Score (inline: on the event loop) and audit (see the module notes); one JSON body.

        The answer is serialised here into one body: BentoML's own output path would send
        it as a stream of chunks, each passing through every middleware.
        """
        if inline:
            prepared = prepare(request, info)
            if self.engine.settings.audit_sync == "write" or self._in_flight == 1:
                answer = self.engine.commit(info, prepared)  # no hand-off (see module notes)
            else:
                answer = await anyio.to_thread.run_sync(
                    self.engine.commit, info, prepared, limiter=self._limiter()
                )
        else:
            answer = await anyio.to_thread.run_sync(
                self._prepare_and_commit, prepare, request, info, limiter=self._limiter()
            )
        return Response(answer.model_dump_json(), media_type="application/json")

    @bentoml.api(route="/score")
    async def score(self, request: ScoreRequest, /, ctx: bentoml.Context) -> ScoreResponse:
        """Score accounts from the feature values in the request; top reasons per account."""
        self._in_flight += 1
        try:
            inline = len(request.accounts) <= INLINE_MAX_ACCOUNTS
            return await self._answer(
                self.engine.prepare_score, request, _info(ctx, "score"), inline
            )  # type: ignore[return-value]
        except RequestFailed as exc:
            return _error(exc, ctx)
        finally:
            self._in_flight -= 1

    @bentoml.api(route="/score_accounts")
    async def score_accounts(
        self, request: ScoreAccountsRequest, /, ctx: bentoml.Context
    ) -> ScoreAccountsResponse:
        """Score accounts by id from the latest feature snapshot; unknown ids are per-item errors."""
        info = _info(ctx, "score_accounts")
        self._in_flight += 1
        try:
            return await self._answer(self.engine.prepare_score_accounts, request, info)  # type: ignore[return-value]
        except RequestFailed as exc:
            return _error(exc, ctx)
        finally:
            self._in_flight -= 1


ExportGuard.add_asgi_middleware(GuardMiddleware, max_body_bytes=MAX_BODY_BYTES)  # type: ignore[attr-defined]  # added by @bentoml.service
install_connection_guards()  # before uvicorn resolves its HTTP protocol (serving/protocol.py)
