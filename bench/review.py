"""Benchmark: the review workspace's queue and case pages, server time and in the browser.

Run by hand, never in CI:

    .venv/bin/python bench/review.py                 # 100k-account run, 2,000 cases
    .venv/bin/python bench/review.py --requests 50 --no-browser
    .venv/bin/python bench/review.py --data data/world   # case pages with the account view

One run: the rows of a 100k-account batch run (2,000 of them in the review and high
bands) are synced into a fresh SQLite review database; the workspace runs in its own
process (uvicorn); one logged-in client then requests, interleaved, the floor (a static
file from the same server), the queue page and case pages, and the report gives p50/p95 of
the server time (the `Server-Timing` header) and of the round trip, with ratios to the
floor; with Chromium, the same pages' load time in the browser (Navigation Timing).
With `--data DIR` (a raw data directory, e.g. `make demo`'s world) the run's accounts are
that world's, cases are synced with its accounts table and the server loads the raw
tables, so a case page also draws the profile, usage chart, timeline and linked accounts.
Targets (issue 13): queue and case pages p95 within 300 ms server time and <= 5x the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "benchmark password"
SERVER = """
import sys, uvicorn
from pathlib import Path
from exportguard.review.db import open_database
from exportguard.review.store import ReviewStore
from exportguard.review.web import create_app
accounts = None
if len(sys.argv) > 4:
    from exportguard.features.contract import read_tables
    from exportguard.features.policy import Policy
    from exportguard.review.accounts import AccountData
    accounts = AccountData(read_tables(sys.argv[4])[0], Policy())
app = create_app(ReviewStore(open_database(sys.argv[1])), Path(sys.argv[2]), "b" * 32,
                 accounts=accounts)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
"""


def run_rows(n: int, cases: int, seed: int = 0, ids: list[str] | None = None) -> pd.DataFrame:
    """A batch run's rows: n accounts (`ids`, shuffled, when given), the top `cases` in the
    review/high bands, 5 reasons."""
    from exportguard.features.registry import FEATURES

    rng = np.random.default_rng(seed)
    if ids is not None:
        n, ids = len(ids), list(rng.permutation(np.asarray(ids, dtype=object)))
    score = np.sort(rng.beta(0.6, 8.0, n))[::-1]
    band = np.full(n, "low", dtype=object)
    band[:cases] = "review"
    band[: cases // 5] = "high"
    names = ids if ids is not None else [f"acc_{i:07d}" for i in range(n)]
    frame = pd.DataFrame({"account_id": names, "score": score,
                          "band": band, "model_version": "1", "model_sha256": "cd" * 32})  # fmt: skip
    for i in range(1, 6):
        f = FEATURES[(7 * i) % len(FEATURES)]
        frame[f"reason_{i}_feature"] = f.name
        frame[f"reason_{i}_value"] = rng.uniform(0, 1, n)
        frame[f"reason_{i}_contribution"] = rng.uniform(0.05, 1.5, n) / i
        frame[f"reason_{i}_sentence"] = f.describe(0.5)
    return frame


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--cases", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=200, help="per page kind")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument(
        "--data", type=Path, help="raw data directory: case pages with the account view"
    )
    opts = parser.parse_args()
    from exportguard.review.db import open_database
    from exportguard.review.store import Actor, ReviewStore
    from exportguard.review.users import add_user

    work = Path(tempfile.mkdtemp(prefix="exportguard-bench-review-"))
    url = f"sqlite:///{work}/review.db"
    users = work / "users.yaml"
    add_user(users, "bench", "supervisor", PASSWORD)
    t = time.perf_counter()
    store = ReviewStore(open_database(url))
    profiles = None
    if opts.data is not None:
        from exportguard.features.contract import read_tables

        profiles = read_tables(opts.data)[0].accounts
        opts.accounts = len(profiles)
    ids = None if profiles is None else profiles["account_id"].astype(str).tolist()
    opened = store.sync_run(run_rows(opts.accounts, opts.cases, ids=ids), {"run_id": "bench"},
                            Actor("cli:bench", "supervisor"), profiles=profiles)  # fmt: skip
    store.close()
    print(f"{opened} cases from {opts.accounts} accounts in {time.perf_counter() - t:.1f}s")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-c", SERVER, url, str(users), str(port)]
    server = subprocess.Popen(argv + ([str(opts.data)] if opts.data is not None else []))
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            for _ in range(1200):  # reading --data takes a while
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)  # type: ignore[union-attr]
            assert (
                c.post(
                    "/login", data={"name": "bench", "password": PASSWORD, "csrf": token}
                ).status_code
                == 303
            )
            rng = np.random.default_rng(1)
            kinds = {"floor": lambda: "/static/htmx-2.0.11.min.js", "queue": lambda: "/queue",
                     "case": lambda: f"/cases/{int(rng.integers(1, opened + 1))}"}  # fmt: skip
            server_ms: dict[str, list[float]] = {k: [] for k in kinds}
            round_ms: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(10):  # warm up
                for path in kinds.values():
                    c.get(path())
            for _ in range(opts.requests):
                for kind, path in kinds.items():
                    t = time.perf_counter()
                    r = c.get(path())
                    round_ms[kind].append(1000 * (time.perf_counter() - t))
                    assert r.status_code == 200, (kind, r.status_code)
                    server_ms[kind].append(float(r.headers["server-timing"].split("dur=")[1]))
        results: dict[str, Any] = {
            "accounts": opts.accounts,
            "cases": opened,
            "account_view": opts.data is not None,
            "cores": os.cpu_count(),
        }
        for kind in kinds:
            results[kind] = {
                "server_p50_ms": pct(server_ms[kind], 50), "server_p95_ms": pct(server_ms[kind], 95),
                "round_p50_ms": pct(round_ms[kind], 50), "round_p95_ms": pct(round_ms[kind], 95),
            }  # fmt: skip
        for kind in ("queue", "case"):
            results[kind]["server_p95_vs_floor"] = (
                results[kind]["server_p95_ms"] / results["floor"]["server_p95_ms"]
            )
            results[kind]["round_p95_vs_floor"] = (
                results[kind]["round_p95_ms"] / results["floor"]["round_p95_ms"]
            )
        if not opts.no_browser:
            results["browser"] = browser_times(base, opened, min(opts.requests, 40))
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(json.dumps(results, indent=1))
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    name = "review-data.json" if opts.data is not None else "review.json"
    (out / name).write_text(json.dumps(results, indent=1))
    print(f"wrote {out / name}")
    return 0


def browser_times(base: str, cases: int, n: int) -> dict[str, Any]:
    """Page load (navigation start to load event) in headless Chromium, p50/p95 in ms."""
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(2)
    out: dict[str, list[float]] = {"floor": [], "queue": [], "case": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{base}/login")
        page.fill("input[name=name]", "bench")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/queue")
        for _ in range(n):
            for kind, path in (("floor", "/healthz"), ("queue", "/queue"),
                               ("case", f"/cases/{int(rng.integers(1, cases + 1))}")):  # fmt: skip
                page.goto(base + path)
                timing = page.evaluate(
                    "() => { const t = performance.getEntriesByType('navigation')[0];"
                    " return t.loadEventEnd - t.startTime; }"
                )
                out[kind].append(float(timing))
        browser.close()
    return {k: {"p50_ms": pct(v, 50), "p95_ms": pct(v, 95)} for k, v in out.items()}


if __name__ == "__main__":
    sys.exit(main())
