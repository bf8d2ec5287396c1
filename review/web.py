"""The analysts' web workspace: login, queue, case page, decisions (FastAPI, Jinja2, HTMX).

Every page but the login needs a session (a signed cookie: HttpOnly, SameSite=Strict,
Secure with `https_only`); every form carries the session's CSRF token; failed logins are
limited per user name and client address. Templates autoescape, so a note or a reason
holding HTML is shown as text. HTMX (vendored, no CDN) refreshes the queue table when a
filter changes. Review errors become a page with their message and 4xx status; nothing
reaches the browser as a traceback.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exportguard.features.registry import BY_NAME, FEATURES
from exportguard.review.accounts import AccountData
from exportguard.review.models import TYPOLOGIES
from exportguard.review.store import Actor, Forbidden, ReviewError, ReviewStore
from exportguard.review.users import User, authenticate, load_users

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MAX_BODY = 64 * 1024
SESSION_SECONDS = 8 * 3600
#: cases per queue page
PAGE = 50


class QueueFilters(BaseModel):
    """The queue's filters as the page's query string (and a saved filter's form) carry them;
    `create_app`'s `_filters` checks their values."""

    status: str = Field("open", max_length=16)
    band: str = Field("", max_length=16)
    family: str = Field("", max_length=32)
    assignee: str = Field("", max_length=64)
    country: str = Field("", max_length=16)
    min_age: str = Field("", max_length=8)
    max_age: str = Field("", max_length=8)
    order: str = Field("score", max_length=8)


class SavedFilterForm(QueueFilters):
    name: str = Field(max_length=64)
    csrf: str = Field(max_length=128)


class BodyLimit:
    """413 for a request body over `limit` bytes (declared or streamed)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(send)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send) -> None:
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b"request body too large"})


class LoginLimiter:
    """At most `attempts` failed logins per (name, address) in `window` seconds."""

    def __init__(self, attempts: int = 5, window: float = 900.0) -> None:
        self.attempts, self.window = attempts, window
        self.failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def blocked(self, key: tuple[str, str]) -> bool:
        q, now = self.failures[key], time.monotonic()
        while q and q[0] < now - self.window:
            q.popleft()
        return len(q) >= self.attempts

    def fail(self, key: tuple[str, str]) -> None:
        self.failures[key].append(time.monotonic())

    def clear(self, key: tuple[str, str]) -> None:
        self.failures.pop(key, None)


def waterfall(reasons: list[dict[str, Any]], width: int = 520) -> dict[str, Any]:
    """Geometry of the reasons' SHAP bars (log-odds), drawn by the template as SVG."""
    top = max([abs(float(r["contribution"])) for r in reasons] or [1.0]) or 1.0
    left, bar_w = 250, width - 250 - 60  # room for the value after the longest bar
    bars: list[dict[str, Any]] = []
    families: dict[str, float] = {}
    for i, r in enumerate(reasons):
        c = float(r["contribution"])
        w = bar_w * abs(c) / top
        bars.append({"y": 8 + 26 * i, "x": left if c >= 0 else left - w, "w": max(w, 1.0),
                     "label": r["feature"], "value": f"{c:+.3f}", "up": c >= 0})  # fmt: skip
        fam = BY_NAME[r["feature"]].family if r["feature"] in BY_NAME else "other"
        families[fam] = families.get(fam, 0.0) + c
    return {"bars": bars, "height": 16 + 26 * len(bars), "width": width, "left": left,
            "families": sorted(families.items(), key=lambda kv: -kv[1])}  # fmt: skip


def link_graph(account_id: str, linked: list[dict[str, Any]], size: int = 360) -> dict[str, Any]:
    """A star drawing of the account (centre) and its linked accounts (a circle around it)."""
    centre = size / 2
    radius = size / 2 - 40
    nodes = []
    for i, link in enumerate(linked):
        angle = 2 * math.pi * i / max(len(linked), 1) - math.pi / 2
        case = link.get("case")
        nodes.append({
            "x": centre + radius * math.cos(angle), "y": centre + radius * math.sin(angle),
            "label": link["account_id"], "via": ", ".join(link["via"]),
            "href": f"/cases/{case.id}" if case is not None else None,
            "colour": {"high": "#c0392b", "review": "#e67e22"}.get(case.band, "#7f8c8d")
            if case is not None else "#bdc3c7",
        })  # fmt: skip
    return {"size": size, "centre": centre, "account": account_id, "nodes": nodes}


def create_app(
    store: ReviewStore,
    users_path: Path,
    secret: str,
    *,
    https_only: bool = False,
    limiter: LoginLimiter | None = None,
    accounts: AccountData | None = None,
) -> FastAPI:
    app = FastAPI(title="exportguard review", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    limiter = limiter or LoginLimiter()
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("user", request.session.get("user"))
        ctx.setdefault("role", request.session.get("role"))
        ctx["csrf"] = _csrf(request)
        return templates.TemplateResponse(request, name, ctx, status_code=status)

    def actor(request: Request) -> Actor:
        name, role = request.session.get("user"), request.session.get("role")
        if not name or not role:
            raise _LoginRequired
        return Actor(str(name), str(role))

    def check_csrf(request: Request, token: str) -> None:
        if not hmac.compare_digest(str(request.session.get("csrf", "")), token or ""):
            raise Forbidden(
                "the form expired or did not come from this workspace (CSRF); reload it"
            )

    @app.exception_handler(_LoginRequired)
    async def _to_login(request: Request, _exc: Exception) -> Response:
        if request.method == "GET":
            return RedirectResponse("/login", status_code=303)
        return page(request, "error.html", 401, message="please log in")

    @app.exception_handler(ReviewError)
    async def _review_error(request: Request, exc: ReviewError) -> Response:
        return page(request, "error.html", exc.status, message=str(exc))

    @app.exception_handler(RequestValidationError)
    async def _bad_form(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "the request"
        return page(request, "error.html", 400, message=f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return page(request, "error.html", exc.status_code, message=str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("review workspace: unexpected error on %s", request.url.path)
        return page(request, "error.html", 500, message="internal error (logged)")

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        return page(request, "login.html")

    @app.post("/login")
    async def login(
        request: Request,
        name: str = Form(max_length=64),
        password: str = Form(max_length=1024),
        csrf: str = Form(max_length=128),
    ) -> Response:
        check_csrf(request, csrf)
        key = (name, request.client.host if request.client else "-")
        if limiter.blocked(key):
            return page(
                request, "login.html", 429, message="too many failed logins; wait 15 minutes"
            )
        user: User | None = authenticate(load_users(users_path), name, password)
        if user is None:
            limiter.fail(key)
            log.info("review login refused for %r from %s", name, key[1])
            return page(request, "login.html", 401, message="wrong name or password")
        limiter.clear(key)
        request.session.clear()
        request.session.update(user=user.name, role=user.role, csrf=secrets.token_urlsafe(32))
        return RedirectResponse("/queue", status_code=303)

    @app.post("/logout")
    async def logout(request: Request, csrf: str = Form(max_length=128)) -> Response:
        check_csrf(request, csrf)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/")
    async def home(request: Request) -> Response:
        actor(request)
        return RedirectResponse("/queue", status_code=303)

    families = sorted({f.family for f in FEATURES})

    statuses = ("open", "claimed", "escalated", "proposed", "confirmed", "cleared", "all")

    def _filters(
        status: str = "open", band: str = "", family: str = "", assignee: str = "",
        country: str = "", min_age: str = "", max_age: str = "", order: str = "score",
    ) -> dict[str, str]:  # fmt: skip
        """The queue's filters, checked; empty strings mean "any"."""
        if status not in statuses:
            raise ReviewError(f"unknown status filter {status!r}")
        if band not in ("", "high", "review"):
            raise ReviewError(f"unknown band filter {band!r}")
        if family and family not in families:
            raise ReviewError(f"unknown typology guess {family!r}")
        if order not in ("score", "rise"):
            raise ReviewError(f"unknown order {order!r}: score or rise")
        if country and not (len(country) <= 16 and country.replace("-", "").isalnum()):
            raise ReviewError(f"country {country!r} is not a country code")
        for label, days in (("account age from", min_age), ("account age to", max_age)):
            if days and not (days.isdigit() and int(days) <= 36_500):
                raise ReviewError(f"{label} {days!r}: a whole number of days, 0 to 36500")
        if min_age and max_age and int(min_age) >= int(max_age):
            raise ReviewError(f"account age from {min_age} days is not below {max_age} days")
        return {"status": status, "band": band, "family": family, "assignee": assignee,
                "country": country, "min_age": min_age, "max_age": max_age, "order": order}  # fmt: skip

    def _queue_ctx(filters: dict[str, str], page_no: int = 1) -> dict[str, Any]:
        if not 1 <= page_no <= 10_000:
            raise ReviewError(f"page {page_no}: between 1 and 10000")
        f = filters
        cases = store.queue(
            None if f["status"] == "all" else f["status"], f["band"] or None, limit=PAGE + 1,
            offset=(page_no - 1) * PAGE, family=f["family"] or None,
            assignee=f["assignee"] or None, country=f["country"] or None,
            min_age_days=int(f["min_age"]) if f["min_age"] else None,
            max_age_days=int(f["max_age"]) if f["max_age"] else None, order=f["order"],
        )  # fmt: skip
        return {"cases": cases[:PAGE], "filters": f, "status_filter": f["status"],
                "page_no": page_no, "more": len(cases) > PAGE, "families": families,
                "statuses": statuses, "countries": store.countries(),
                "qs": urlencode({k: v for k, v in f.items() if v}),
                "now": store.clock()}  # fmt: skip

    @app.get("/queue", response_class=HTMLResponse)
    @app.get("/queue/rows", response_class=HTMLResponse)  # HTMX: the table's rows only
    async def queue(
        request: Request, q: Annotated[QueueFilters, Query()], page_no: int = 1
    ) -> Response:
        me = actor(request)
        filters = _filters(**q.model_dump(include=set(QueueFilters.model_fields)))
        if request.url.path.endswith("/rows"):
            return page(request, "_rows.html", **_queue_ctx(filters, page_no))
        return page(request, "queue.html", **_queue_ctx(filters, page_no),
                    saved=store.saved_filters(me))  # fmt: skip

    @app.post("/filters")
    async def save_filter(request: Request, form: Annotated[SavedFilterForm, Form()]) -> Response:
        me = actor(request)
        check_csrf(request, form.csrf)
        filters = _filters(**form.model_dump(include=set(QueueFilters.model_fields)))
        query = {k: v for k, v in filters.items() if v}
        store.save_filter(me, form.name, query)
        target = "/queue?" + urlencode(query)
        if request.headers.get("HX-Request"):  # HTMX posted it: load the saved view
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.post("/filters/{filter_id}/delete")
    async def delete_filter(
        request: Request, filter_id: int, csrf: str = Form(max_length=128)
    ) -> Response:
        me = actor(request)
        check_csrf(request, csrf)
        store.delete_filter(me, filter_id)
        return RedirectResponse("/queue", status_code=303)

    @app.post("/bulk")
    async def bulk(
        request: Request,
        action: str = Form(max_length=16),
        note: str = Form("", max_length=8000),
        assignee: str = Form("", max_length=64),
        pick: Annotated[list[str] | None, Form()] = None,
        csrf: str = Form(max_length=128),
    ) -> Response:
        me = actor(request)
        check_csrf(request, csrf)
        selection = []
        for item in pick or []:
            case_id, _, version = item.partition(":")
            if not (case_id.isdigit() and version.isdigit()):
                raise ReviewError(f"selected case {item!r} is not <id>:<version>")
            selection.append((int(case_id), int(version)))
        n = store.bulk(selection, me, action, note, assignee or None)
        return page(request, "error.html", 200, message=f"{action}: {n} case(s) done", ok=True)

    @app.post("/claim-next")
    async def claim_next(request: Request, csrf: str = Form(max_length=128)) -> Response:
        me = actor(request)
        check_csrf(request, csrf)
        case = store.claim_next(me)
        if case is None:
            return page(request, "error.html", 409, message="the queue is empty")
        return RedirectResponse(f"/cases/{case.id}", status_code=303)

    @app.get("/cases/{case_id}", response_class=HTMLResponse)
    async def case_page(request: Request, case_id: int) -> Response:
        me = actor(request)
        case = store.get(case_id)
        extra: dict[str, Any] = {"profile": None, "usage": None, "linked": [], "timeline": [],
                                 "graph": None}  # fmt: skip
        if accounts is not None and accounts.known(case.account_id):
            linked = accounts.linked(case.account_id)
            their = store.cases_of([link["account_id"] for link in linked])
            for link in linked:
                link["case"] = their.get(link["account_id"])
            extra = {"profile": accounts.profile(case.account_id),
                     "usage": accounts.usage_chart(case.account_id), "linked": linked,
                     "timeline": accounts.timeline(case.account_id),
                     "graph": link_graph(case.account_id, linked)}  # fmt: skip
        return page(request, "case.html", case=case, decisions=store.decisions(case_id),
                    history=store.history(case_id), **extra,
                    chart=waterfall(case.reasons), typologies=TYPOLOGIES, me=me)  # fmt: skip

    @app.post("/cases/{case_id}/claim")
    async def claim(
        request: Request, case_id: int, version: int = Form(), csrf: str = Form(max_length=128)
    ) -> Response:
        me = actor(request)
        check_csrf(request, csrf)
        store.claim(case_id, me, version)
        return RedirectResponse(f"/cases/{case_id}", status_code=303)

    @app.post("/cases/{case_id}/decide")
    async def decide(
        request: Request,
        case_id: int,
        version: int = Form(),
        kind: str = Form(max_length=16),
        note: str = Form("", max_length=8000),
        typology: str = Form("", max_length=32),
        csrf: str = Form(max_length=128),
    ) -> Response:
        me = actor(request)
        check_csrf(request, csrf)
        store.decide(case_id, me, kind, note, version, typology or None)
        return RedirectResponse(f"/cases/{case_id}", status_code=303)

    @app.post("/cases/{case_id}/review")
    async def review(
        request: Request,
        case_id: int,
        version: int = Form(),
        verdict: str = Form(max_length=8),
        note: str = Form("", max_length=8000),
        csrf: str = Form(max_length=128),
    ) -> Response:
        me = actor(request)
        check_csrf(request, csrf)
        if verdict not in ("approve", "reject"):
            raise ReviewError(f"verdict {verdict!r}: approve or reject")
        store.review_confirmation(case_id, me, verdict == "approve", note, version)
        return RedirectResponse(f"/cases/{case_id}", status_code=303)

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        response: Response = await call_next(request)
        response.headers["Server-Timing"] = f"app;dur={1000 * (time.perf_counter() - start):.2f}"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        static = request.url.path.startswith("/static/")  # versioned file names
        response.headers["Cache-Control"] = "public, max-age=86400" if static else "no-store"
        return response

    app.add_middleware(SessionMiddleware, secret_key=secret, session_cookie="exportguard_review",
                       max_age=SESSION_SECONDS, same_site="strict", https_only=https_only)  # fmt: skip
    app.add_middleware(BodyLimit)
    return app


class _LoginRequired(Exception):
    pass


def _csrf(request: Request) -> str:
    """The session's CSRF token (made on first use, also before login)."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)
