"""Point in time: rows dated at or after as_of never change a feature; features_at agrees
with account_features and answers each request as of its own time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tiny_world import T, tiny_world

from exportguard.features.compute import account_features, features_at
from exportguard.features.registry import ADDED_FAMILIES, ADDED_FLAGS, FEATURE_NAMES, FEATURES
from exportguard.features.tables import TIME_COLUMNS, RawTables


def _later_rows(world: RawTables) -> RawTables:
    """Append, for every dated table, rows dated exactly at T and after it, built to move
    every family: restricted traffic, new shared devices/instruments/prefixes, labels,
    new accounts, organisations incorporated at T at a shared address."""
    t = world
    late = [T, T + pd.Timedelta(days=1)]
    accounts = pd.concat(
        [
            t.accounts,
            pd.DataFrame(
                {
                    "account_id": ["A6", "A7"],
                    "created_at": late,
                    "account_type": ["organization", "individual"],
                    "org_id": ["O6", None],
                    "declared_country": ["US", "US"],
                    "billing_country": ["CN", "CN"],
                    "email_domain": ["qq.com", "qq.com"],
                    "signup_ip_country": ["CN", "CN"],
                    "tier": ["free", "free"],
                    "is_channel_partner": [False, False],
                    "research_exemption": [False, False],
                }
            ),
        ],
        ignore_index=True,
    )
    ids = ["A1", "A2", "A3", "A4", "A6", "A7"]
    usage_rows, login_rows, pay_rows = [], [], []
    for k, acc in enumerate(ids):
        for when in late:
            usage_rows.append(
                (acc, "KX", when, "PX", "CN", 4134, "tor", 500, 10**8, 10**8, 99, "zh", 1.0)
            )
            login_rows.append((acc, when, "CN", "tor", "DX", 480, "zh-CN"))
            method = "crypto" if when == T else "prepaid_card"
            pay_rows.append(
                (f"late{k}{when:%d}", acc, when, 1000.0, method, "IX", "IR", "disputed")
            )
    usage = pd.concat(
        [t.api_usage, pd.DataFrame(usage_rows, columns=t.api_usage.columns)], ignore_index=True
    )
    logins = pd.concat(
        [t.logins, pd.DataFrame(login_rows, columns=t.logins.columns)], ignore_index=True
    )
    payments = pd.concat(
        [t.payments, pd.DataFrame(pay_rows, columns=t.payments.columns)], ignore_index=True
    )
    labels = pd.concat(
        [
            t.labels,
            pd.DataFrame(
                {
                    "account_id": ["A2", "A4", "A6"],
                    "label": [1, 1, 1],
                    "labelled_at": [T, T, T + pd.Timedelta(days=2)],
                    "source": ["tip"] * 3,
                    "typology": ["reseller"] * 3,
                }
            ),
        ],
        ignore_index=True,
    )
    orgs = pd.concat(
        [
            t.organizations,
            pd.DataFrame(
                {
                    "org_id": ["O6", "O7"],
                    "legal_name": ["Dragon Parent Company", "Middle Holdings"],
                    "registered_country": ["HK", "CN"],
                    "incorporated_at": late,
                    "registered_address": ["1 RAFFLES PLACE #10-01", "1 BEIJING ROAD"],
                }
            ),
        ],
        ignore_index=True,
    )
    return t.with_tables(
        accounts=accounts,
        api_usage=usage,
        logins=logins,
        payments=payments,
        labels=labels,
        organizations=orgs,
    )


def test_every_dated_table_is_extended():
    later = _later_rows(tiny_world())
    for table, col in TIME_COLUMNS.items():
        assert (later.table(table)[col] >= T).any(), table


def test_rows_at_or_after_as_of_change_nothing():
    before = account_features(tiny_world(), T)
    after = account_features(_later_rows(tiny_world()), T)
    pd.testing.assert_frame_equal(before, after)
    # and the later rows do matter as of a later time (the test would catch a leak)
    moved = account_features(_later_rows(tiny_world()), T + pd.Timedelta(days=3))
    moved = moved.set_index("account_id").loc[before["account_id"]]
    changed = [n for n in FEATURE_NAMES if not np.allclose(
        moved[n].to_numpy(), before.set_index("account_id")[n].to_numpy(), equal_nan=True
    )]  # fmt: skip
    assert len(changed) >= 40, f"only {len(changed)} features react to the later rows"
    added = [f.name for f in FEATURES if f.family in ADDED_FAMILIES] + list(ADDED_FLAGS)
    still = sorted(set(added) - set(changed))
    assert still == [], f"added features the later rows do not move: {still}"


def test_features_at_equals_account_features_at_one_time():
    world = tiny_world()
    table = account_features(world, T)
    requests = pd.DataFrame({"account_id": table["account_id"][::-1], "as_of": T})
    at = features_at(world, requests)
    assert list(at.columns) == ["account_id", "as_of", *FEATURE_NAMES]
    assert list(at["account_id"]) == list(requests["account_id"])  # request order kept
    pd.testing.assert_frame_equal(
        at.drop(columns="as_of").sort_values("account_id").reset_index(drop=True), table
    )


def test_each_request_is_answered_as_of_its_own_time():
    world = tiny_world()
    times = [pd.Timestamp(x) for x in ("2026-02-05", "2026-02-16", "2026-02-20", "2026-03-01")]
    requests = pd.DataFrame(
        {"account_id": ["A2", "A3", "A2", "A3", "A1", "A2"], "as_of": [*times, times[2], times[3]]}
    )
    at = features_at(world, requests).set_index(["account_id", "as_of"])
    for (acc, when), row in at.iterrows():
        alone = account_features(world, when).set_index("account_id").loc[acc]
        pd.testing.assert_series_equal(row, alone, check_names=False)
    # hand-checked moments: on 02-05 A2 is linked to A3 by address only; A1 joins through
    # instrument I1 on 02-15, A1's positive label (02-10) then counts
    assert at.loc[("A2", times[0]), "linked_component_size"] == 1
    assert at.loc[("A2", times[0]), "linked_confirmed_positives"] == 0
    assert at.loc[("A3", times[1]), "linked_confirmed_positives"] == 1
    assert at.loc[("A2", times[2]), "linked_component_size"] == 2
    # O4 is incorporated exactly at 02-20 00:00: not yet known at that instant
    assert at.loc[("A2", times[2]), "orgs_at_registered_address"] == 1
    assert at.loc[("A2", times[3]), "orgs_at_registered_address"] == 2


def test_request_before_sign_up_is_refused():
    requests = pd.DataFrame(
        {
            "account_id": ["A1", "A4", "A4"],
            "as_of": pd.to_datetime(["2026-03-01", "2026-01-01", "2026-02-01"]),
        }
    )
    with pytest.raises(ValueError, match=r"2 row\(s\).*before it was created.*A4"):
        features_at(tiny_world(), requests)


def test_unknown_account_is_refused():
    requests = pd.DataFrame({"account_id": ["A1", "ZZ"], "as_of": [T, T]})
    with pytest.raises(ValueError, match=r"1 row\(s\).*not in accounts.*ZZ"):
        features_at(tiny_world(), requests)


def test_timezone_aware_as_of_is_utc():
    world = tiny_world()
    aware = account_features(world, pd.Timestamp("2026-03-01 08:00", tz="Asia/Singapore"))
    pd.testing.assert_frame_equal(aware, account_features(world, T))
