"""The review workspace's pages through Starlette's test client, on a real database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from review_rows import RUN, scores

from exportguard.review.db import open_database
from exportguard.review.store import Actor, ReviewStore
from exportguard.review.users import add_user
from exportguard.review.web import LoginLimiter, create_app

PASSWORD = "correct horse battery"


@pytest.fixture()
def setup(review_url: str, tmp_path: Path) -> Iterator[tuple[ReviewStore, Path]]:
    users = tmp_path / "users.yaml"
    for name, role in [("ana", "analyst"), ("bob", "analyst"), ("sue", "supervisor"),
                       ("sam", "supervisor"), ("aud", "auditor")]:  # fmt: skip
        add_user(users, name, role, PASSWORD)
    store = ReviewStore(open_database(review_url))
    store.sync_run(scores(), RUN, Actor("cli:test", "supervisor"))
    yield store, users
    store.close()


def client(setup: tuple[ReviewStore, Path], limiter: LoginLimiter | None = None) -> TestClient:
    store, users = setup
    return TestClient(create_app(store, users, "s" * 32, limiter=limiter), follow_redirects=False)


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def login(c: TestClient, name: str, password: str = PASSWORD) -> str:
    token = csrf(c.get("/login").text)
    resp = c.post("/login", data={"name": name, "password": password, "csrf": token})
    assert resp.status_code == 303, resp.text
    return csrf(c.get("/queue").text)


def test_every_page_but_login_needs_a_session(setup) -> None:  # type: ignore[no-untyped-def]
    c = client(setup)
    for path in ("/", "/queue", "/queue/rows", "/cases/1"):
        resp = c.get(path)
        assert resp.status_code == 303 and resp.headers["location"] == "/login"
    assert c.post("/claim-next", data={"csrf": "x"}).status_code == 401
    assert c.get("/login").status_code == 200 and c.get("/healthz").json() == {"status": "ok"}


def test_login_cookie_rate_limit_and_wrong_password(setup) -> None:  # type: ignore[no-untyped-def]
    c = client(setup, LoginLimiter(attempts=3, window=60))
    token = csrf(c.get("/login").text)
    for _ in range(3):
        bad = c.post("/login", data={"name": "ana", "password": "nope", "csrf": token})
        assert bad.status_code == 401 and "wrong name or password" in bad.text
    blocked = c.post("/login", data={"name": "ana", "password": PASSWORD, "csrf": token})
    assert blocked.status_code == 429
    ok = c.post("/login", data={"name": "bob", "password": PASSWORD, "csrf": token})
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert (
        c.post("/login", data={"name": "x", "password": "y", "csrf": "forged"}).status_code == 403
    )


def test_forms_without_the_csrf_token_are_refused(setup) -> None:  # type: ignore[no-untyped-def]
    c = client(setup)
    login(c, "ana")
    resp = c.post("/claim-next", data={"csrf": "not-the-token"})
    assert resp.status_code == 403 and "CSRF" in resp.text
    assert setup[0].queue(status="claimed") == []


def test_a_case_end_to_end_with_a_second_supervisor(setup) -> None:  # type: ignore[no-untyped-def]
    store, _ = setup
    sue, sam = client(setup), client(setup)
    token = login(sue, "sue")
    resp = sue.post("/claim-next", data={"csrf": token})
    assert resp.status_code == 303
    case_id = int(resp.headers["location"].rsplit("/", 1)[1])
    page = sue.get(f"/cases/{case_id}").text
    assert "&lt;b&gt;40%&lt;/b&gt;" in page and "<b>40%</b>" not in page  # reasons escaped
    assert "<svg" in page and 'class="up"' in page
    version = store.get(case_id).version
    note = "<script>alert('x')</script> relay to CN"
    missing = sue.post(f"/cases/{case_id}/decide",
                       data={"csrf": token, "version": version, "kind": "confirm", "note": " ",
                             "typology": "reseller"})  # fmt: skip
    assert missing.status_code == 400 and "a note is required" in missing.text
    done = sue.post(f"/cases/{case_id}/decide",
                    data={"csrf": token, "version": version, "kind": "confirm", "note": note,
                          "typology": "reseller"})  # fmt: skip
    assert done.status_code == 303
    again = sue.post(f"/cases/{case_id}/decide",
                     data={"csrf": token, "version": version, "kind": "confirm", "note": note,
                           "typology": "reseller"})  # fmt: skip
    assert again.status_code == 409  # a double submit changes nothing
    page = sue.get(f"/cases/{case_id}").text
    assert "&lt;script&gt;" in page and "<script>alert" not in page
    assert 'id="review"' not in page  # the proposer gets no approval form
    own = sue.post(f"/cases/{case_id}/review", data={"csrf": token, "version": version + 1,
                                                     "verdict": "approve", "note": "self"})  # fmt: skip
    assert own.status_code == 403
    token2 = login(sam, "sam")
    assert 'id="review"' in sam.get(f"/cases/{case_id}").text
    ok = sam.post(f"/cases/{case_id}/review", data={"csrf": token2, "version": version + 1,
                                                    "verdict": "approve", "note": "agreed"})  # fmt: skip
    assert ok.status_code == 303 and store.get(case_id).status == "confirmed"


def test_roles_and_bad_input_get_clear_4xx(setup) -> None:  # type: ignore[no-untyped-def]
    aud = client(setup)
    token = login(aud, "aud")
    assert "claim-next" not in aud.get("/queue").text
    assert aud.post("/claim-next", data={"csrf": token}).status_code == 403
    ana = client(setup)
    token = login(ana, "ana")
    assert ana.get("/cases/99999").status_code == 404
    bad = ana.post("/cases/1/decide", data={"csrf": token, "version": "seven", "kind": "clear"})
    assert bad.status_code == 400 and "version" in bad.text and "Traceback" not in bad.text
    assert ana.get("/queue?status=nonsense").status_code == 400
    assert ana.get("/queue?page_no=0").status_code == 400
    assert "next</a>" not in ana.get("/queue").text  # all cases fit on the first page
    huge = ana.post("/cases/1/decide", content=b"x" * 70_000,
                    headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert huge.status_code == 413
    rows = ana.get("/queue/rows?band=high")
    assert rows.status_code == 200 and "<html" not in rows.text and "high" in rows.text
    assert "default-src 'self'" in rows.headers["content-security-policy"]
    assert (
        rows.headers["cache-control"] == "no-store" and "app;dur=" in rows.headers["server-timing"]
    )
    static = ana.get("/static/htmx-2.0.11.min.js")
    assert static.status_code == 200 and "max-age" in static.headers["cache-control"]


def test_bulk_escalation_from_the_queue(setup) -> None:  # type: ignore[no-untyped-def]
    store, _ = setup
    ana = client(setup)
    token = login(ana, "ana")
    page = ana.get("/queue").text
    picks = re.findall(r'name="pick" value="([0-9]+:[0-9]+)"', page)[:2]
    assert len(picks) == 2 and 'value="assign"' not in page  # analysts do not assign
    done = ana.post("/bulk", data={"csrf": token, "action": "escalate", "note": "batch",
                                   "pick": picks})  # fmt: skip
    assert done.status_code == 200 and "escalate: 2 case(s) done" in done.text
    again = ana.post("/bulk", data={"csrf": token, "action": "escalate", "note": "batch",
                                    "pick": picks})  # fmt: skip
    assert again.status_code == 409
    bad = ana.post("/bulk", data={"csrf": token, "action": "escalate", "note": "x",
                                  "pick": ["1;drop"]})  # fmt: skip
    assert bad.status_code == 400 and "is not &lt;id&gt;:&lt;version&gt;" in bad.text  # escaped
    assert len(store.queue(status="escalated")) == 2
    assert ana.get("/queue?family=nonsense").status_code == 400


def test_queue_filters_order_pages_and_saved_filters(setup) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    store, _ = setup
    profiles = pd.DataFrame({"account_id": [f"acc_{i:03d}" for i in range(10)],
                             "declared_country": ["SG", "HK"] * 5,
                             "created_at": pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=3)})  # fmt: skip
    store.sync_run(scores(), {"run_id": "run0002"}, Actor("cli:test", "supervisor"),
                   profiles=profiles)  # fmt: skip
    ana, bob = client(setup), client(setup)
    token = login(ana, "ana")
    page = ana.get("/queue").text
    assert '<option value="HK"' in page and '<option value="SG"' in page
    sg = ana.get("/queue/rows?country=SG&max_age=7&order=rise").text
    assert "<td>SG</td>" in sg and "<td>HK</td>" not in sg and "<td>3</td>" in sg
    assert "No cases." in ana.get("/queue/rows?country=SG&min_age=30").text
    for bad, message in (("country=%3Cb%3E", "not a country code"), ("min_age=-1", "whole number"),
                         ("min_age=9&max_age=3", "is not below"), ("order=age", "unknown order")):  # fmt: skip
        resp = ana.get(f"/queue/rows?{bad}")
        assert resp.status_code == 400 and message in resp.text, bad
    long = ana.get("/queue?assignee=" + "a" * 65)
    assert long.status_code == 400 and "assignee" in long.text and "Traceback" not in long.text
    form = {"name": "SG <new>", "country": "SG", "max_age": "7", "status": "open",
            "order": "rise"}  # fmt: skip
    missing = ana.post("/filters", data=form)
    assert missing.status_code == 400 and "csrf" in missing.text
    assert ana.post("/filters", data={**form, "csrf": "forged"}).status_code == 403
    saved = ana.post("/filters", data={**form, "csrf": token})
    assert saved.status_code == 303
    assert saved.headers["location"] == "/queue?status=open&country=SG&max_age=7&order=rise"
    htmx = ana.post("/filters", data={**form, "csrf": token}, headers={"HX-Request": "true"})
    assert htmx.status_code == 204 and htmx.headers["HX-Redirect"].startswith("/queue?")
    page = ana.get("/queue").text
    assert "SG &lt;new&gt;" in page and 'href="/queue?status=open&amp;country=SG' in page
    (mine,) = store.saved_filters(Actor("ana", "analyst"))
    bob_token = login(bob, "bob")
    bob_page = bob.get("/queue").text
    assert "SG &lt;new&gt;" not in bob_page and "none yet" in bob_page
    assert bob.post(f"/filters/{mine.id}/delete", data={"csrf": bob_token}).status_code == 404
    assert ana.post(f"/filters/{mine.id}/delete", data={"csrf": token}).status_code == 303
    assert store.saved_filters(Actor("ana", "analyst")) == []
