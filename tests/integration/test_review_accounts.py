"""The case page's account view from the raw tables: profile, usage chart, linked accounts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from exportguard.features.contract import read_tables
from exportguard.features.policy import Policy
from exportguard.review.accounts import AccountData
from exportguard.review.db import open_database
from exportguard.review.store import Actor, ReviewStore
from exportguard.review.users import add_user
from exportguard.review.web import create_app
from exportguard.synth.world import generate_world, write_world

PASSWORD = "correct horse battery"


@pytest.mark.slow
def test_case_page_shows_profile_usage_and_linked_cases(tmp_path: Path) -> None:
    write_world(generate_world(400, seed=3, days=60), tmp_path / "data", tmp_path / "t.parquet")
    tables, _ = read_tables(tmp_path / "data")
    data = AccountData(tables, Policy())
    with_links = [a for a in tables.accounts["account_id"] if data.linked(a)]
    assert with_links, "the world has accounts sharing devices, instruments or prefixes"
    account = with_links[0]
    other = data.linked(account)[0]["account_id"]
    # the rule: a link is a shared entity, checked against the raw rows
    devices = tables.logins.groupby("account_id")["device_id"].apply(set)
    prefixes = tables.api_usage.groupby("account_id")["ip_prefix"].apply(set)
    instruments = tables.payments.groupby("account_id")["instrument_id"].apply(set)
    shared = [s.get(account, set()) & s.get(other, set()) for s in (devices, prefixes, instruments)]
    assert any(shared) or "registered address" in data.linked(account)[0]["via"]

    ids = [account, other]
    rows = pd.DataFrame({"account_id": ids, "score": [0.9, 0.5], "band": ["high", "review"],
                         "model_version": "1", "model_sha256": "ef" * 32,
                         "reason_1_feature": "vpn_tor_traffic_share_30d", "reason_1_value": 0.5,
                         "reason_1_contribution": 0.7, "reason_1_sentence": "half via VPN"})  # fmt: skip
    store = ReviewStore(open_database(f"sqlite:///{tmp_path}/r.db"))
    store.sync_run(rows, {"run_id": "r1"}, Actor("cli:test", "supervisor"))
    users = tmp_path / "users.yaml"
    add_user(users, "ana", "analyst", PASSWORD)
    c = TestClient(create_app(store, users, "k" * 32, accounts=data), follow_redirects=False)
    import re

    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)  # type: ignore[union-attr]
    assert (
        c.post("/login", data={"name": "ana", "password": PASSWORD, "csrf": token}).status_code
        == 303
    )
    mine, theirs = store.cases_of(ids)[account], store.cases_of(ids)[other]
    page = c.get(f"/cases/{mine.id}").text
    declared = tables.accounts.set_index("account_id").loc[account, "declared_country"]
    assert f"Declared country <strong>{declared}</strong>" in page
    assert 'id="usage"' in page and "requests/day" in page
    assert f'href="/cases/{theirs.id}"' in page  # the linked account's own case
    assert 'id="links"' in page and page.count('<a href="/cases/') >= 2  # table and graph
    events = data.timeline(account)
    assert events[0]["what"].startswith("signed up") and 'id="timeline"' in page
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    n_instruments = tables.payments.loc[
        tables.payments["account_id"] == account, "instrument_id"
    ].nunique()
    assert sum("new" in e["what"] and "instrument" in e["what"] for e in events) == n_instruments
    usage = tables.api_usage.loc[tables.api_usage["account_id"] == account]
    chart = data.usage_chart(account)
    heights = np.array([b["h"] for b in chart["bars"]])
    assert len(usage) and heights.max() <= chart["height"] + 1e-9
    store.close()
