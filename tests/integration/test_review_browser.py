"""The workspace in a real browser (Playwright driving Debian's Chromium, headless).

Two analysts' sessions: one proposes a confirmation, a second supervisor approves it; the
note with markup shows as text; the queue filter updates the table in place (HTMX).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from review_rows import RUN, scores

from exportguard.review.db import open_database
from exportguard.review.store import Actor, ReviewStore
from exportguard.review.users import add_user
from exportguard.review.web import create_app

CHROMIUM = Path("/usr/bin/chromium")
#: screenshots of the queue and of a case page, kept after the run (gitignored)
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PASSWORD = "correct horse battery"


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, ReviewStore]]:
    users = tmp_path / "users.yaml"
    add_user(users, "sue", "supervisor", PASSWORD)
    add_user(users, "sam", "supervisor", PASSWORD)
    store = ReviewStore(open_database(f"sqlite:///{tmp_path}/review.db"))
    store.sync_run(scores(), RUN, Actor("cli:test", "supervisor"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(store, users, "k" * 32), host="127.0.0.1", port=port,
                            log_level="warning")  # fmt: skip
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the workspace did not start"
    yield f"http://127.0.0.1:{port}", store
    srv.should_exit = True
    thread.join(timeout=10)
    store.close()


@pytest.mark.slow
def test_two_supervisors_work_a_case_in_the_browser(server: tuple[str, ReviewStore]) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), (
        "Chromium is missing: apt-get install chromium (make setup does, as root)"
    )
    base, store = server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            sue = browser.new_context().new_page()
            sue.goto(f"{base}/queue")
            expect(sue).to_have_url(f"{base}/login")
            sue.fill("input[name=name]", "sue")
            sue.fill("input[name=password]", "wrong password!")
            sue.click("button[type=submit]")
            expect(sue.get_by_role("alert")).to_contain_text("wrong name or password")
            sue.fill("input[name=name]", "sue")
            sue.fill("input[name=password]", PASSWORD)
            sue.click("button[type=submit]")
            expect(sue).to_have_url(f"{base}/queue")
            rows = sue.locator("#rows tr:not(.pager)")
            total = rows.count()
            sue.select_option("select[name=band]", "high")  # HTMX swaps the rows in place
            expect(rows).not_to_have_count(total)
            assert all("high" in t for t in rows.all_inner_texts())
            sue.fill("#save-filter input[name=name]", "high band")  # saved with the live filters
            sue.click("#save-filter button")
            expect(sue).to_have_url(re.compile(r"/queue\?status=open&band=high&order=score$"))
            expect(sue.locator("#saved-filters")).to_contain_text("high band")
            ARTIFACTS.mkdir(exist_ok=True)
            sue.screenshot(path=str(ARTIFACTS / "review-queue.png"), full_page=True)
            sue.click("#claim-next")
            expect(sue.locator("#status")).to_have_text("claimed")
            case_id = int(sue.url.rsplit("/", 1)[1])
            sue.check("input[value=confirm]")
            sue.select_option("select[name=typology]", "reseller")
            sue.fill("textarea[name=note]", "<img src=x onerror=alert(1)> relays to CN")
            sue.click("#decide button[type=submit]")
            expect(sue.locator("#status")).to_have_text("proposed")
            expect(sue.locator("td.note")).to_have_text("<img src=x onerror=alert(1)> relays to CN")
            assert sue.locator("#review").count() == 0  # no self-approval form
            expect(sue.locator("#waiting")).to_contain_text("waiting for approval")
            assert sue.locator("svg rect.up").count() >= 1  # the SHAP chart is drawn
            sue.screenshot(path=str(ARTIFACTS / "review-case.png"), full_page=True)

            sam = browser.new_context().new_page()
            sam.goto(f"{base}/login")
            sam.fill("input[name=name]", "sam")
            sam.fill("input[name=password]", PASSWORD)
            sam.click("button[type=submit]")
            sam.goto(f"{base}/cases/{case_id}")
            sam.fill("#review textarea[name=note]", "ownership confirmed")
            sam.click("#review button[value=approve]")
            expect(sam.locator("#status")).to_have_text("confirmed")
        finally:
            browser.close()
    assert store.get(case_id).status == "confirmed"
    assert store.labels()["label"].tolist() == [1]
