"""The ASGI guard in front of every endpoint: request id, bearer auth, JSON only, body size limit.

It runs before BentoML parses anything, so a pickle or multipart body is refused (415)
without being deserialised and an oversize body (413) is never buffered beyond the limit,
whether or not it declares a Content-Length. Health probes (`/livez`, `/healthz`,
`/readyz`) stay open; everything else, including `/metadata`, the OpenAPI docs and
`/metrics`, needs a token. Errors are JSON: `{"error": <message>, "code": <machine code>}`,
and every refusal is logged (request id, method, path, client address, status, reason).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from exportguard.serving.auth import AuthError, TokenStore

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset({"/livez", "/healthz", "/readyz"})
SCOPE_KEY = "exportguard"
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


async def send_error(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    """Send a complete JSON error response."""
    body = json.dumps({"error": message, "code": code}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class GuardMiddleware:
    """Authenticates, checks media type and size, and tags the request with an id and caller."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, tokens: TokenStore | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.tokens = tokens if tokens is not None else TokenStore.from_env()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, REQUEST_ID_HEADER.encode())
        request_id = given if given and _REQUEST_ID_RE.match(given) else uuid.uuid4().hex
        rid_header = (REQUEST_ID_HEADER.encode(), request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        if scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send_with_id)
            return

        async def refuse(
            status: int, code: str, message: str, headers: dict[str, str] | None = None
        ) -> None:
            client = scope.get("client") or ("-", 0)
            log.info(
                "%s %s %s from %s refused (%d %s): %s",
                request_id,
                scope["method"],
                scope["path"],
                client[0],
                status,
                code,
                message,
            )
            await send_error(send_with_id, status, code, message, headers)

        try:
            caller = self.tokens.authenticate(_header(scope, b"authorization"))
        except AuthError as exc:
            code = "unauthorized" if exc.status == 401 else "forbidden"
            extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            await refuse(exc.status, code, str(exc), extra)
            return
        scope[SCOPE_KEY] = {"request_id": request_id, "caller": caller, "started": time.monotonic()}
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send_with_id)
            return
        ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            shown = ctype or "none"
            await refuse(
                415,
                "unsupported_media_type",
                f"Content-Type {shown!r} is not accepted; send application/json",
            )
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await refuse(
                413,
                "body_too_large",
                f"request body over {self.max_body_bytes} bytes (Content-Length {declared})",
            )
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await refuse(
                    413, "body_too_large", f"request body over {self.max_body_bytes} bytes"
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_id)
