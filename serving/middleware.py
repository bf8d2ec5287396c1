"""The ASGI guard in front of every endpoint: request id, bearer auth, JSON only, body size limit.

It runs before BentoML parses anything, so a pickle or multipart body is refused (415)
without being deserialised and an oversize body (413) is never buffered beyond the limit,
whether or not it declares a Content-Length. Health probes (`/livez`, `/healthz`,
`/readyz`) stay open; everything else, including `/metadata`, the OpenAPI docs and
`/metrics`, needs a token. A body that is not JSON or repeats a key in one object is
refused (400) before the framework sees it. Every error, ours or the framework's (404,
405, validation, 429, 5xx), leaves as JSON `{"error": <message>, "code": <machine code>}`
(plus `field`, the path of the first invalid field, and `errors` for validation), never
with framework internals; every refusal is logged (request id, method, path, client
address, status, reason).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
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
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    body_fields: dict[str, Any] | None = None,
) -> None:
    """Send a complete JSON error response."""
    body = json.dumps({"error": message, "code": code, **(body_fields or {})}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


#: machine codes for errors the framework answers itself (routing, limits, timeouts)
STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
    504: "timeout",
}
MAX_FIELD_ERRORS = 20


class DuplicateKey(ValueError):
    """A JSON object repeats a key (the last one would silently win)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def body_problem(body: bytes) -> tuple[str, str, str | None] | None:
    """(code, message, field) when a JSON body is malformed or repeats a key; else None."""
    try:
        json.loads(body, object_pairs_hook=_no_duplicate_keys)
    except DuplicateKey as exc:
        return "duplicate_key", f"key {exc.key!r} appears twice in one JSON object", exc.key
    except UnicodeDecodeError:
        return "invalid_json", "request body is not UTF-8 text", None
    except json.JSONDecodeError as exc:
        return (
            "invalid_json",
            f"request body is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})",
            None,
        )
    except RecursionError:
        return "invalid_json", "request body nests too deeply", None
    return None


def _field_path(loc: Any) -> str:
    return ".".join(str(part) for part in loc) if isinstance(loc, list | tuple) else str(loc)


def shaped_error(status: int, body: bytes) -> bytes:
    """Any error body in the documented `{"error", "code", "field"?}` shape, without internals.

    Ours pass through; the framework's validation errors keep the field path, type and
    message of each error (no model class names or documentation URLs); anything else
    (plain-text 404/405/429/5xx) gets the status's code and phrase.
    """
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("code"), str) and "error" in data:
        return body
    code = STATUS_CODES.get(status, f"http_{status}")
    if isinstance(data, dict) and isinstance(data.get("detail"), list) and data["detail"]:
        errors = []
        for item in data["detail"][:MAX_FIELD_ERRORS]:
            if isinstance(item, dict):
                errors.append(
                    {
                        "field": _field_path(item.get("loc", [])),
                        "type": str(item.get("type", "invalid")),
                        "error": str(item.get("msg", "invalid value")),
                    }
                )
        if errors:
            if errors[0]["type"] == "json_invalid":
                return json.dumps(
                    {"error": f"request body is not valid JSON: {errors[0]['error']}",
                     "code": "invalid_json"}
                ).encode()  # fmt: skip
            first = errors[0]
            where = first["field"] or "body"
            return json.dumps(
                {
                    "error": f"{where}: {first['error']}"
                    + (f" (and {len(data['detail']) - 1} more)" if len(data["detail"]) > 1 else ""),
                    "code": "invalid_request",
                    "field": first["field"],
                    "errors": errors,
                }
            ).encode()
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    return json.dumps({"error": phrase, "code": code}).encode()


def shape_errors(send: Send) -> Send:
    """Wrap `send` so every response with status >= 400 leaves in the documented shape."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def shaped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and message["status"] >= 400:
            start = message
            return
        if message["type"] == "http.response.body" and start is not None:
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = shaped_error(start["status"], b"".join(chunks))
            headers = [
                (k, v)
                for k, v in start.get("headers", [])
                if k.lower() not in (b"content-type", b"content-length")
            ]
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            start = None
            return
        await send(message)

    return shaped


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

        send_shaped = shape_errors(send_with_id)

        if scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send_shaped)
            return

        async def refuse(
            status: int,
            code: str,
            message: str,
            headers: dict[str, str] | None = None,
            body_fields: dict[str, Any] | None = None,
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
            await send_error(send_shaped, status, code, message, headers, body_fields)

        try:
            caller = self.tokens.authenticate(_header(scope, b"authorization"))
        except AuthError as exc:
            code = "unauthorized" if exc.status == 401 else "forbidden"
            extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            await refuse(exc.status, code, str(exc), extra)
            return
        scope[SCOPE_KEY] = {"request_id": request_id, "caller": caller, "started": time.monotonic()}
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send_shaped)
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
        problem = body_problem(body)
        if problem is not None:
            code, text, field = problem
            extra = {"field": field} if field is not None else {}
            await refuse(400, code, text, body_fields=extra)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_shaped)
