"""Hand-computed feature values on the tiny world (tests/tiny_world.py) as of T = 2026-03-01,
on both feature engines (DuckDB, and Spark in local mode)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from tiny_world import T, tiny_world

from exportguard.features.compute import account_features


@pytest.fixture(
    scope="module",
    params=["duckdb", pytest.param("spark", marks=[pytest.mark.spark, pytest.mark.slow])],
)
def engine(request: pytest.FixtureRequest) -> str:
    """Every hand-computed value is checked on both engines."""
    if request.param == "spark":
        pytest.importorskip("pyspark")
    return str(request.param)


@pytest.fixture(scope="module")
def feats(engine: str) -> pd.DataFrame:
    return account_features(tiny_world(), T, engine=engine).set_index("account_id")


def check(feats: pd.DataFrame, account: str, expected: dict[str, float]) -> None:
    got = {k: feats.loc[account, k] for k in expected}
    for name, want in expected.items():
        if isinstance(want, float) and math.isnan(want):
            assert math.isnan(got[name]), f"{account}.{name}: expected NaN, got {got[name]}"
        else:
            assert got[name] == pytest.approx(want, rel=1e-9, abs=1e-12), f"{account}.{name}"


def entropy_bits(*p: float) -> float:
    return -sum(x * math.log2(x) for x in p if x > 0)


def test_only_accounts_created_before_as_of(feats):
    assert list(feats.index) == ["A1", "A2", "A3", "A4"]  # A5 signs up after T


def test_traffic_geography(feats):
    # A1, last 30 days: 60 requests from CN (hosting), 40 from US; all time adds 100 from CN
    check(
        feats,
        "A1",
        {
            "restricted_traffic_share_30d": 0.6,
            "restricted_traffic_share_all": 160 / 200,
            "intermediary_traffic_share_30d": 0.0,
            "hosting_traffic_share_30d": 0.6,
            "vpn_tor_traffic_share_30d": 0.0,
            "declared_country_mismatch_30d": 0.6,
            "traffic_country_entropy_30d": entropy_bits(0.6, 0.4),
            "distinct_asns_30d": 2,
            "login_restricted_share": 0.5,
            "signup_ip_restricted": 1.0,
            "billing_declared_mismatch": 0.0,
        },
    )
    # console: CN 1/2, US 1/2; API (all before T): CN 0.8, US 0.2 -> Jensen-Shannon, base 2
    p, q = np.array([0.5, 0.5]), np.array([0.8, 0.2])
    m = (p + q) / 2
    js = 0.5 * np.sum(p * np.log2(p / m)) + 0.5 * np.sum(q * np.log2(q / m))
    check(feats, "A1", {"console_api_country_divergence": js})
    check(feats, "A2", {"intermediary_traffic_share_30d": 1.0, "declared_country_mismatch_30d": 0})
    check(feats, "A3", {"signup_ip_restricted": np.nan, "billing_declared_mismatch": 1.0})
    # A4 has no traffic: shares unknown, counts zero
    check(
        feats,
        "A4",
        {
            "restricted_traffic_share_30d": np.nan,
            "traffic_country_entropy_30d": np.nan,
            "distinct_asns_30d": 0,
            "login_restricted_share": np.nan,
            "console_api_country_divergence": np.nan,
            "billing_declared_mismatch": np.nan,
        },
    )


def test_time_zone(feats):
    # A1 is active only at 02:00-03:00 UTC: centre 02:30 -> implied UTC+11.5 vs US -6 -> 6.5 h
    check(feats, "A1", {"activity_tz_gap_hours": 6.5})
    check(feats, "A2", {"activity_tz_gap_hours": 4.5})  # 10:30 UTC -> UTC+3.5 vs SG +8
    check(feats, "A3", {"activity_tz_gap_hours": 7.5})  # 12:30 UTC -> UTC+1.5 vs US -6
    profile = np.zeros(24)
    profile[2] = 1.0
    utc8 = np.isin(np.arange(24), range(1, 10)).astype(float)  # 09-18 local at UTC+8
    us = np.isin(np.arange(24), range(15, 24)).astype(float)  # 09-18 local at UTC-6
    excess = np.corrcoef(profile, utc8)[0, 1] - np.corrcoef(profile, us)[0, 1]
    check(feats, "A1", {"utc8_rhythm_excess": excess})
    check(feats, "A2", {"utc8_rhythm_excess": 0.0})  # declared SG is UTC+8 itself
    # A1 logged in once with a UTC+8 browser clock (CN's), once with US time
    check(feats, "A1", {"browser_tz_mismatch_share": 0.5, "browser_tz_restricted_share": 0.5})
    check(feats, "A2", {"browser_tz_mismatch_share": 0.0, "browser_tz_restricted_share": 0.0})
    check(feats, "A4", {"activity_tz_gap_hours": np.nan, "browser_tz_mismatch_share": np.nan})


def test_language(feats):
    # A1 30 d: 1000 input tokens zh (share 1), 1000 en; zh is not usual in the US
    check(
        feats,
        "A1",
        {
            "restricted_language_share_30d": 0.5,
            "unexpected_restricted_language_share_30d": 0.5,
            "browser_language_restricted_share": 0.5,  # zh-CN yes, en-US no
        },
    )
    # A2: 80% zh from Singapore, where Chinese is an ordinary language; zh-SG is not restricted
    check(
        feats,
        "A2",
        {
            "restricted_language_share_30d": 0.8,
            "unexpected_restricted_language_share_30d": 0.0,
            "browser_language_restricted_share": 0.0,
        },
    )


def test_reseller_volume(feats):
    week_entropy = entropy_bits(0.6, 0.4) / math.log2(168)
    check(
        feats,
        "A1",
        {
            "api_keys_30d": 2,
            "ip_prefixes_30d": 2,
            "max_hourly_end_users_30d": 5,
            "end_users_per_active_hour_30d": 4.0,  # (5 + 3) / 2 active hours
            "log_tokens_30d": math.log1p(2500),
            "token_growth_30d": math.log1p(2500) - math.log1p(2000),
            "hour_of_week_entropy_30d": week_entropy,
            "active_hour_share_30d": 2 / 720,
        },
    )
    check(feats, "A2", {"active_hour_share_30d": 1 / 720, "max_hourly_end_users_30d": 0})
    check(
        feats,
        "A4",
        {
            "api_keys_30d": 0,
            "log_tokens_30d": 0.0,
            "token_growth_30d": np.nan,
            "end_users_per_active_hour_30d": np.nan,
            "active_hour_share_30d": 0.0,
        },
    )


def test_payments(feats):
    # A1: CN card ok, HK prepaid ok, CN card failed, crypto (issuer unknown) disputed
    check(
        feats,
        "A1",
        {
            "issuer_country_mismatch_share": 1.0,
            "restricted_issuer_share": 2 / 3,
            "intermediary_issuer_share": 1 / 3,
            "prepaid_crypto_amount_share": 80 / 180,
            "failed_payment_rate": 0.25,
            "disputed_refunded_rate": 0.25,
            "distinct_instruments_90d": 3,
        },
    )
    # A3 pays with an HK card and bills to HK: not a mismatch
    check(feats, "A3", {"issuer_country_mismatch_share": 0.0, "intermediary_issuer_share": 1.0})
    check(feats, "A2", {"failed_payment_rate": np.nan, "distinct_instruments_90d": 0})


def test_organisation(feats):
    # O1: Wang Wei (CN) 30% + Middle Holdings 40%, itself 55% CN/RU-owned -> restricted in
    # full by the 50% rule: 0.3 + 0.4 = 0.7; the largest direct restricted stake is 30%
    check(
        feats,
        "A2",
        {
            "incorporation_age_at_signup_days": 10.0,
            "incorporated_in_intermediary": 1.0,
            "restricted_ownership_effective": 0.7,
            "restricted_ownership_max_direct": 0.3,
            "orgs_at_registered_address": 2,  # O2 and O4 share 1 RAFFLES PLACE
            "freemail_organization": 1.0,
        },
    )
    age = (pd.Timestamp("2025-12-01") - pd.Timestamp("2020-01-01")).days
    check(
        feats,
        "A3",
        {
            "incorporation_age_at_signup_days": float(age),
            "restricted_ownership_effective": 0.4,  # O3 (a CN company) holds 40%
            "restricted_ownership_max_direct": 0.4,
            "restricted_entity_name_similarity": 1.0,  # owner O3 'Dragon Parent Co' is listed
            "freemail_organization": 0.0,
        },
    )
    for name in ("restricted_ownership_effective", "orgs_at_registered_address"):
        check(feats, "A1", {name: np.nan})  # an individual without an organisation
    assert 0.0 <= feats.loc["A2", "restricted_entity_name_similarity"] < 0.9


def test_graph(feats):
    # A1-A2 share device D1, A1-A3 share instrument I1, A2-A3 share a registered address;
    # A1 was confirmed positive on 02-10 (A3's positive label comes after T)
    check(
        feats,
        "A1",
        {
            "linked_component_size": 2,
            "shared_device_accounts": 1,
            "shared_instrument_accounts": 1,
            "linked_confirmed_positives": 0,
        },
    )
    check(feats, "A2", {"linked_component_size": 2, "linked_confirmed_positives": 1})
    check(feats, "A3", {"shared_device_accounts": 0, "linked_confirmed_positives": 1})
    check(feats, "A4", {"linked_component_size": 0, "shared_instrument_accounts": 0})


def test_lifecycle(feats):
    check(feats, "A1", {"account_age_days": 59.0, "days_to_first_10m_tokens": np.nan})
    check(
        feats,
        "A3",
        {
            "account_age_days": 90.0,
            "days_to_first_10m_tokens": 71.5,  # 20M tokens in the hour starting 02-10 12:00
            # weeks before T: 1000, 1000, 20M after a 71.5-day idle start -> 20M / 1000
            "dormant_then_spike_ratio": 20_000.0,
            "research_exemption": 1.0,
            "is_channel_partner": 1.0,
            "is_organization": 1.0,
        },
    )
    # A1: idle 01-10 .. 02-20 (41 days); weeks: 2500 (after the gap) and 2000 -> 2500 / 2250
    check(feats, "A1", {"dormant_then_spike_ratio": 2500 / 2250})
    check(feats, "A4", {"dormant_then_spike_ratio": np.nan, "account_age_days": 28.0})


def test_prompt_language_mix(feats, engine):
    # A1's 90 days: 3,000 input tokens in zh hours, 1,000 in an en hour
    check(feats, "A1", {"prompt_language_zh_share_90d": 0.75, "prompt_language_en_share_90d": 0.25})
    # an hour with no dominant language reported is left out, not counted as "other"
    world = tiny_world()
    usage = world.api_usage.copy()
    usage.loc[usage["top_language"].eq("en") & usage["account_id"].eq("A1"), "top_language"] = None
    quiet = account_features(world.with_tables(api_usage=usage), T, engine=engine)
    quiet = quiet.set_index("account_id")
    check(quiet, "A1", {"prompt_language_zh_share_90d": 1.0, "prompt_language_en_share_90d": 0.0})


def test_duckdb_limits_come_from_the_environment(monkeypatch):
    """EXPORTGUARD_DUCKDB_MEMORY_LIMIT / _THREADS reach the engine; the features do not move."""
    from exportguard.features.sql import DuckDBEngine

    seen = []
    real = DuckDBEngine.__post_init__

    def record(self):
        real(self)
        seen.append(
            self.con.execute(
                "SELECT current_setting('memory_limit'), current_setting('threads')"
            ).fetchall()[0]
        )

    monkeypatch.setattr(DuckDBEngine, "__post_init__", record)
    monkeypatch.setenv("EXPORTGUARD_DUCKDB_MEMORY_LIMIT", "300MB")
    monkeypatch.setenv("EXPORTGUARD_DUCKDB_THREADS", "1")
    limited = account_features(tiny_world(), T)
    assert seen and seen[0][1] == 1 and seen[0][0].replace(" ", "") in ("286.1MiB", "300.0MB")
    monkeypatch.delenv("EXPORTGUARD_DUCKDB_MEMORY_LIMIT")
    monkeypatch.delenv("EXPORTGUARD_DUCKDB_THREADS")
    pd.testing.assert_frame_equal(limited, account_features(tiny_world(), T))
