"""The feature engine (features/sql.py + the parts beside it): every feature of every
account at several times per account on both scenarios, point in time, policy as data,
bit-identical in any query, DuckDB == Spark.

Before the numpy engine was removed, these worlds gave DuckDB == numpy for all 88 features
(both scenarios, four as-of times; floats to 1e-9 relative, NaN exactly where NaN); the
hand-computed values of tests/unit/test_features_values.py are now the reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from exportguard.features.compute import account_features, features_at
from exportguard.features.contract import read_tables
from exportguard.features.policy import Policy
from exportguard.features.registry import FEATURE_NAMES
from exportguard.features.sql import (
    SQL_FEATURES,
    DuckDBEngine,
    SqlEngineError,
    policy_relations,
    sql_features,
    to_spark,
)
from exportguard.features.tables import RawTables
from exportguard.synth.world import generate_world, write_world


def _world(tmp_path: Path, scenario: str, seed: int) -> tuple[RawTables, pd.Timestamp]:
    world = generate_world(300, seed=seed, days=60, scenario=scenario)
    write_world(world, tmp_path / "data", tmp_path / "truth.parquet")
    tables, report = read_tables(tmp_path / "data")
    return tables, report.horizon


def _requests(tables: RawTables, horizon: pd.Timestamp) -> pd.DataFrame:
    """Each account at the end and 10, 25 and 45 days before, where it existed."""
    acc = tables.accounts
    times = [horizon - pd.Timedelta(days=d) for d in (0, 10, 25, 45)]
    req = pd.DataFrame(
        {
            "account_id": np.repeat(acc["account_id"].to_numpy(), len(times)),
            "as_of": np.tile(np.array(times, dtype="datetime64[ns]"), len(acc)),
        }
    )
    created = np.repeat(acc["created_at"].to_numpy(), len(times))
    return req.loc[created < req["as_of"].to_numpy()].reset_index(drop=True)


def assert_same(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, ...] = SQL_FEATURES) -> None:
    assert list(a["account_id"]) == list(b["account_id"])
    for name in names:
        x, y = a[name].to_numpy(np.float64), b[name].to_numpy(np.float64)
        assert np.array_equal(np.isnan(x), np.isnan(y)), f"{name}: NaN in different rows"
        ok = np.isnan(x) | np.isclose(x, y, rtol=1e-9, atol=1e-12)
        assert ok.all(), (
            f"{name}: {int((~ok).sum())} value(s) differ, e.g. {x[~ok][:3]} vs {y[~ok][:3]}"
        )


@pytest.mark.slow
@pytest.mark.parametrize("scenario,seed", [("default", 3), ("hard", 4)])
def test_the_training_pass_equals_one_pass_per_time(
    tmp_path: Path, scenario: str, seed: int
) -> None:
    """Every as-of in one query (the training pass) == `account_features` at each time."""
    tables, horizon = _world(tmp_path, scenario, seed)
    requests = _requests(tables, horizon)
    assert requests["as_of"].nunique() == 4 and len(requests) > 600
    everything = features_at(tables, requests)
    relational = sql_features(tables, requests)
    assert_same(everything, relational)
    for as_of in requests["as_of"].unique():
        at = everything.loc[everything["as_of"] == as_of].reset_index(drop=True)
        one = account_features(tables, pd.Timestamp(as_of))
        assert_same(at.sort_values("account_id").reset_index(drop=True), one, FEATURE_NAMES)
    assert (relational["as_of"].to_numpy() == requests["as_of"].to_numpy()).all()
    # the worlds exercise the features: some traffic in restricted and intermediary places,
    # shared devices and instruments, linked components
    assert relational["restricted_traffic_share_all"].gt(0).any()
    assert relational["intermediary_traffic_share_30d"].gt(0).any()
    assert relational["traffic_country_entropy_30d"].gt(0).any()
    for name in (
        "login_anonymised_share_90d",
        "api_key_growth_30d",
        "utc8_rhythm_excess",
        "console_api_country_divergence",
        "dormant_then_spike_ratio",
        "unexpected_restricted_language_share_30d",
        "prompt_language_zh_share_90d",
        "prepaid_crypto_amount_share",
        "issuer_country_mismatch_share",
        "incorporated_in_intermediary",
        "restricted_ownership_max_direct",
        "freemail_organization",
        "incorporation_age_at_signup_days",
        "shared_device_accounts",
        "shared_instrument_accounts",
    ):
        assert relational[name].gt(0).any(), name
    assert relational["token_growth_30d"].notna().any() and relational["api_keys_30d"].gt(1).any()
    assert everything["linked_component_size"].gt(0).any()


def test_rows_at_or_after_as_of_change_nothing(tmp_path: Path) -> None:
    tables, horizon = _world(tmp_path, "default", 5)
    as_of = horizon - pd.Timedelta(days=20)
    acc = tables.accounts.loc[tables.accounts["created_at"] < as_of]
    requests = pd.DataFrame({"account_id": acc["account_id"], "as_of": as_of})
    assert len(requests) > 100
    before = sql_features(tables, requests)
    before_all = features_at(tables, requests)
    u = tables.api_usage
    later = u.loc[u["hour"] < as_of].sample(500, random_state=0, replace=True).copy()
    later["hour"] = as_of + pd.to_timedelta(np.arange(len(later)) % 200, unit="h")  # at as_of on
    later["ip_country"] = "IR"
    later["network_type"] = "tor"
    p = tables.payments
    paid_later = p.loc[p["paid_at"] < as_of].sample(300, random_state=0, replace=True).copy()
    paid_later["paid_at"] = as_of + pd.to_timedelta(np.arange(len(paid_later)) % 50, unit="D")
    paid_later["issuer_country"] = "RU"
    paid_later["status"] = "disputed"
    lg = tables.logins
    login_later = lg.loc[lg["login_at"] < as_of].sample(300, random_state=0, replace=True).copy()
    login_later["login_at"] = as_of + pd.to_timedelta(np.arange(len(login_later)) % 90, unit="h")
    login_later["ip_country"] = "CN"
    login_later["network_type"] = "vpn_proxy"
    login_later["browser_language"] = "zh-CN"
    login_later["browser_tz_offset_min"] = 480
    # devices and prefixes passed to other accounts from as_of on: links that must not count
    login_later["device_id"] = np.roll(login_later["device_id"].to_numpy(), 7)
    later["ip_prefix"] = np.roll(later["ip_prefix"].to_numpy(), 7)
    grown = tables.with_tables(
        api_usage=pd.concat([u, later], ignore_index=True),
        payments=pd.concat([p, paid_later], ignore_index=True),
        logins=pd.concat([lg, login_later], ignore_index=True),
    )
    assert_same(before, sql_features(grown, requests))
    assert_same(before_all, features_at(grown, requests), FEATURE_NAMES)
    login_earlier = login_later.assign(login_at=as_of - pd.Timedelta(hours=1))
    moved = sql_features(tables.with_tables(logins=pd.concat([lg, login_earlier])), requests)
    assert (moved["login_anonymised_share_90d"] > before["login_anonymised_share_90d"]).any()
    assert (
        moved["browser_language_restricted_share"] > before["browser_language_restricted_share"]
    ).any()
    # the same rows one hour earlier are inside the window and do change features
    earlier = later.assign(hour=as_of - pd.Timedelta(hours=1))
    moved = sql_features(tables.with_tables(api_usage=pd.concat([u, earlier])), requests)
    assert (moved["vpn_tor_traffic_share_30d"] > before["vpn_tor_traffic_share_30d"]).any()
    paid_earlier = paid_later.assign(paid_at=as_of - pd.Timedelta(hours=1))
    moved = sql_features(tables.with_tables(payments=pd.concat([p, paid_earlier])), requests)
    assert (moved["disputed_refunded_rate"] > before["disputed_refunded_rate"]).any()


def test_rare_red_flags(tmp_path: Path) -> None:
    """Flags the generated worlds seldom raise (restricted operators' ASNs, round amounts,
    unlisted languages, accounts without a declared country, registered-agent addresses,
    absent organisation tables), checked against counts made here."""
    tables, horizon = _world(tmp_path, "hard", 9)
    rng = np.random.default_rng(0)
    u = tables.api_usage.copy()
    pick = rng.random(len(u)) < 0.1
    u.loc[pick, "asn"] = Policy().restricted_operator_asns[0]
    u.loc[rng.random(len(u)) < 0.05, "top_language"] = "zh-Hant-TW"
    p = tables.payments.copy()
    p.loc[rng.random(len(p)) < 0.3, "amount_usd"] = 150.0
    acc = tables.accounts.copy()
    acc.loc[rng.random(len(acc)) < 0.05, "declared_country"] = None
    orgs = tables.organizations.copy()  # registered agents: one address, many organisations
    orgs.loc[orgs.index[1:8], "registered_address"] = orgs["registered_address"].iloc[0]
    orgs.loc[orgs.index[2], "incorporated_at"] = horizon - pd.Timedelta(days=20)
    orgs.loc[orgs.index[3], "incorporated_at"] = pd.NaT
    odd = tables.with_tables(api_usage=u, payments=p, accounts=acc, organizations=orgs)
    requests = _requests(odd, horizon)
    relational = sql_features(odd, requests)
    assert relational["restricted_operator_traffic_share_90d"].gt(0).any()
    assert relational["round_amount_payment_share"].gt(0).any()
    # organisations at the shared address known at each as_of, minus the account's own
    acc_org = odd.accounts.set_index("account_id")["org_id"]
    shared = orgs["registered_address"].iloc[0]
    at_address = orgs.loc[orgs["registered_address"] == shared]
    req_org = requests["account_id"].map(acc_org)
    mine = req_org.isin(at_address["org_id"]).to_numpy()
    inc = orgs.set_index("org_id")["incorporated_at"]
    own_inc = req_org[mine].map(inc)
    known_self = (own_inc.isna() | (own_inc < requests.loc[mine, "as_of"])).to_numpy()
    expected = [
        int((at_address["incorporated_at"].isna() | (at_address["incorporated_at"] < t)).sum()) - 1
        for t in requests.loc[mine, "as_of"]
    ]
    got = relational.loc[mine, "orgs_at_registered_address"].to_numpy()
    assert known_self.sum() > 3 and max(expected) > 1
    assert np.array_equal(got[known_self], np.array(expected, dtype=float)[known_self])
    assert np.isnan(got[~known_self]).all()  # incorporated at or after as_of: unknown
    assert relational["activity_tz_gap_hours"].isna().any()  # no declared country, no offset
    # without the optional organisation tables the organisation features are NaN alike
    bare = odd.with_tables(organizations=None, ownership=None)
    bare_rel = features_at(bare, requests)
    for name in ("orgs_at_registered_address", "restricted_ownership_effective"):
        assert bare_rel[name].isna().all(), name
    assert bare_rel["freemail_organization"].notna().all()


def test_features_are_bit_identical_in_any_query(tmp_path: Path) -> None:
    """Sums of doubles are exact decimals, so a request's features do not depend on the
    other requests of the query or on the threads' order: training pass == scoring pass."""
    tables, horizon = _world(tmp_path, "default", 10)
    requests = _requests(tables, horizon)
    shuffled = requests.sample(frac=1.0, random_state=1).reset_index(drop=True)
    end = requests.loc[requests["as_of"] == horizon].reset_index(drop=True)
    a = sql_features(tables, requests, engine=DuckDBEngine(threads=2))
    b = sql_features(tables, shuffled, engine=DuckDBEngine(threads=1))
    c = sql_features(tables, end)
    key = ["account_id", "as_of"]
    b = b.set_index(key).loc[pd.MultiIndex.from_frame(requests[key])].reset_index()
    a_end = a.loc[requests["as_of"] == horizon].reset_index(drop=True)
    for name in SQL_FEATURES:
        assert np.array_equal(a[name].to_numpy(), b[name].to_numpy(), equal_nan=True), name
        assert np.array_equal(a_end[name].to_numpy(), c[name].to_numpy(), equal_nan=True), name


@pytest.mark.parametrize("scenario,seed", [("default", 11), ("hard", 12)])
def test_tables_read_out_of_core_give_bit_identical_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: str, seed: int
) -> None:
    """The activity tables validated in chunks and scanned from disk by the engine: the same
    report and the same features of every request, to the last bit, as read whole."""
    import exportguard.features.scan as scan

    monkeypatch.setattr(scan.chunks, "__defaults__", (2_000,))  # several chunks per table
    tables, horizon = _world(tmp_path, scenario, seed)
    on_disk, report = read_tables(tmp_path / "data", scan=("payments", "api_usage", "logins"))
    assert report.horizon == horizon and on_disk.api_usage is None
    assert on_disk.scanned["api_usage"].rows > 3 * 2_000
    requests = _requests(tables, horizon)
    a, b = features_at(tables, requests), features_at(on_disk, requests)
    for name in FEATURE_NAMES:
        assert np.array_equal(a[name].to_numpy(), b[name].to_numpy(), equal_nan=True), name


def test_policy_enters_as_data(tmp_path: Path) -> None:
    tables, horizon = _world(tmp_path, "default", 6)
    requests = pd.DataFrame({"account_id": tables.accounts["account_id"], "as_of": horizon})
    wider = Policy(restricted_countries=(*Policy().restricted_countries, "SG"))
    rel = policy_relations(wider)["policy_countries"].set_index("country")
    assert bool(rel.loc["SG", "restricted"]) and bool(rel.loc["SG", "intermediary"])
    base, widened = sql_features(tables, requests), sql_features(tables, requests, wider)
    wide, narrow = widened["restricted_traffic_share_all"], base["restricted_traffic_share_all"]
    assert wide.isna().equals(narrow.isna()) and (wide.fillna(0) >= narrow.fillna(0)).all()
    assert (wide > narrow).any()


def test_bad_requests_are_refused_with_their_reason(tmp_path: Path) -> None:
    tables, horizon = _world(tmp_path, "default", 7)
    with pytest.raises(SqlEngineError, match=r"lack column\(s\) \['as_of'\]"):
        sql_features(tables, pd.DataFrame({"account_id": ["a"]}))
    no_time = pd.DataFrame({"account_id": ["a", "b"], "as_of": [horizon, pd.NaT]})
    with pytest.raises(SqlEngineError, match="1 row\\(s\\) have no as_of time"):
        sql_features(tables, no_time)
    with pytest.raises(SqlEngineError, match="unknown relational families \\['graph'\\]"):
        sql_features(tables, no_time, families=["graph"])
    # an account without traffic gets NaN shares and zero distinct networks, not an error
    quiet = tables.accounts["account_id"].iloc[:1]
    empty = tables.with_tables(api_usage=tables.api_usage.iloc[:0])
    empty = empty.with_tables(payments=tables.payments.iloc[:0])
    out = sql_features(empty, pd.DataFrame({"account_id": quiet, "as_of": horizon}))
    assert np.isnan(out.loc[0, "restricted_traffic_share_30d"])
    assert np.isnan(out.loc[0, "failed_payment_rate"])
    assert out.loc[0, "distinct_asns_30d"] == 0.0 and out.loc[0, "distinct_instruments_90d"] == 0.0


def test_one_definition_transpiles_to_spark_sql() -> None:
    from exportguard.features.sql import SQL_FAMILIES

    for family, (sql, _, _) in SQL_FAMILIES.items():
        spark_sql = to_spark(sql)
        assert "EPOCH_US" not in spark_sql.upper(), family  # Spark's name is unix_micros
    assert "LOG(2," in to_spark(SQL_FAMILIES["usage_geo"][0])  # DuckDB's log2
    assert "FILTER(WHERE" in to_spark(SQL_FAMILIES["usage_geo"][0])
    assert "IS DISTINCT FROM" in to_spark(SQL_FAMILIES["payments"][0])
    assert "INTERVAL '30' DAY" in to_spark(SQL_FAMILIES["reseller"][0])
    assert "UNIX_MICROS(hour) DIV 3600000000" in to_spark(SQL_FAMILIES["reseller"][0])
    eng = DuckDBEngine(threads=1, memory_limit="512MB")
    assert eng.query("SELECT current_setting('threads') AS t")["t"][0] == 1
    eng.close()


def test_duckdb_spills_past_its_memory_limit_where_it_is_told(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    eng = DuckDBEngine(threads=1, memory_limit="100MB", temp_directory=str(spill))
    groups = eng.query(
        "SELECT count(*) AS n FROM (SELECT i % 5000000 AS k, count(*) FROM range(30000000) "
        "AS t(i) GROUP BY 1)"
    )
    assert groups["n"][0] == 5_000_000  # a hash table larger than the limit: it spilled
    assert any(spill.iterdir())
    eng.close()


@pytest.mark.spark
@pytest.mark.slow
def test_spark_equals_duckdb(tmp_path: Path) -> None:
    from exportguard.batch.spark import spark_session
    from exportguard.features.sql import SparkEngine

    tables, horizon = _world(tmp_path, "hard", 8)
    requests = _requests(tables, horizon)
    spark = spark_session("local[2]")
    expected = sql_features(tables, requests)
    assert_same(expected, sql_features(tables, requests, engine=SparkEngine(spark)))
    # the activity tables left on disk: Spark reads their Parquet copies
    on_disk, _ = read_tables(tmp_path / "data", scan=("payments", "api_usage", "logins"))
    assert_same(expected, sql_features(on_disk, requests, engine=SparkEngine(spark)))
