"""The synthetic world: contract shape, determinism, timelines, labels, twins, and hardness."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rapidfuzz import fuzz, process
from synth_checks import raw_column_aggregates, single_column_aucs

from exportguard.cli import main
from exportguard.synth.population import make_population
from exportguard.synth.scenario import HABITS, SCENARIOS
from exportguard.synth.world import TABLES, generate_world

END = pd.Timestamp("2026-10-01")
COUNTRY = re.compile(r"^[A-Z]{2}$")
NETS = {"residential", "mobile", "business", "hosting", "vpn_proxy", "tor", "unknown"}
COLUMNS = {
    "accounts": {"account_id": "str", "created_at": "time", "account_type": "str", "org_id": "str",
                 "declared_country": "str", "billing_country": "str", "email_domain": "str",
                 "signup_ip_country": "str", "tier": "str", "is_channel_partner": "bool",
                 "research_exemption": "bool"},
    "organizations": {"org_id": "str", "legal_name": "str", "registered_country": "str",
                      "incorporated_at": "time", "registered_address": "str"},
    "ownership": {"org_id": "str", "owner_name": "str", "owner_type": "str",
                  "owner_country": "str", "ownership_pct": "float"},
    "payments": {"payment_id": "str", "account_id": "str", "paid_at": "time", "amount_usd": "float",
                 "method": "str", "instrument_id": "str", "issuer_country": "str", "status": "str"},
    "api_usage": {"account_id": "str", "api_key_id": "str", "hour": "time", "ip_prefix": "str",
                  "ip_country": "str", "asn": "int", "network_type": "str", "requests": "int",
                  "input_tokens": "int", "output_tokens": "int", "end_user_ids": "int",
                  "top_language": "str", "top_language_share": "float"},
    "logins": {"account_id": "str", "login_at": "time", "ip_country": "str", "network_type": "str",
               "device_id": "str", "browser_tz_offset_min": "int", "browser_language": "str"},
    "labels": {"account_id": "str", "label": "int", "labelled_at": "time", "source": "str",
               "typology": "str"},
    "restricted_entities": {"name": "str", "country": "str", "list_name": "str"},
}  # fmt: skip
ENUMS = {
    ("accounts", "account_type"): {"individual", "organization"},
    ("accounts", "tier"): {"free", "build", "scale", "enterprise"},
    ("ownership", "owner_type"): {"person", "company"},
    ("payments", "method"): {
        "card",
        "prepaid_card",
        "bank_transfer",
        "wallet",
        "crypto",
        "invoice",
    },
    ("payments", "status"): {"succeeded", "failed", "refunded", "disputed"},
    ("api_usage", "network_type"): NETS,
    ("logins", "network_type"): NETS,
    ("labels", "source"): {"investigation", "tip", "rule_alert", "audit"},
    ("labels", "typology"): {
        "reseller",
        "shell_company",
        "proxy_access",
        "exemption_abuse",
        "other",
    },
    ("labels", "label"): {0, 1},
}
COUNTRY_COLUMNS = [("accounts", c) for c in ("declared_country", "billing_country", "signup_ip_country")] + [
    ("organizations", "registered_country"), ("ownership", "owner_country"),
    ("payments", "issuer_country"), ("api_usage", "ip_country"), ("logins", "ip_country"),
    ("restricted_entities", "country"),
]  # fmt: skip
EVENT_TIME = {
    "payments": "paid_at",
    "api_usage": "hour",
    "logins": "login_at",
    "labels": "labelled_at",
}


@pytest.fixture(scope="module", params=["default", "hard"])
def world(request):
    return generate_world(3000, seed=11, days=180, end=END, scenario=request.param)


def _kind_ok(s: pd.Series, kind: str) -> bool:
    if kind == "time":
        return s.dtype == "datetime64[ns]"
    if kind == "bool":
        return pd.api.types.is_bool_dtype(s)
    if kind == "int":
        return pd.api.types.is_integer_dtype(s)
    if kind == "float":
        return pd.api.types.is_float_dtype(s)
    return pd.api.types.is_string_dtype(s)


def test_same_seed_same_world_and_other_seed_differs():
    a, b, c = generate_world(300, seed=5), generate_world(300, seed=5), generate_world(300, seed=6)
    for name in TABLES:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert not a.tables["api_usage"]["requests"].equals(c.tables["api_usage"]["requests"])


def test_every_contract_column_has_its_type(world):
    assert set(world.tables) == set(TABLES)
    for name, cols in COLUMNS.items():
        df = world.tables[name]
        assert list(df.columns) == list(cols), name
        assert len(df) > 0, name
        for col, kind in cols.items():
            assert _kind_ok(df[col], kind), (name, col, df[col].dtype)


def test_enums_countries_ranges_and_keys(world):
    t = world.tables
    for (name, col), allowed in ENUMS.items():
        assert set(t[name][col].dropna().unique()) <= allowed, (name, col)
    for name, col in COUNTRY_COLUMNS:
        values = t[name][col].dropna()
        assert values.map(lambda v: bool(COUNTRY.match(v))).all(), (name, col)
    assert t["ownership"]["ownership_pct"].between(0, 100).all()
    share = t["api_usage"]["top_language_share"].dropna()
    assert share.between(0, 1).all()
    assert (
        (t["api_usage"][["requests", "input_tokens", "output_tokens", "end_user_ids"]] >= 0)
        .all()
        .all()
    )
    assert (t["payments"]["amount_usd"] > 0).all()
    for name, key in (
        ("accounts", "account_id"),
        ("organizations", "org_id"),
        ("payments", "payment_id"),
    ):
        assert t[name][key].is_unique, name
    usage_key = ["account_id", "api_key_id", "hour", "ip_prefix"]
    assert not t["api_usage"].duplicated(usage_key).any()
    assert t["labels"]["account_id"].is_unique
    ids = set(t["accounts"]["account_id"])
    for name in EVENT_TIME:
        assert set(t[name]["account_id"]) <= ids, name
    orgs = set(t["organizations"]["org_id"])
    assert set(t["accounts"]["org_id"].dropna()) <= orgs
    assert set(t["ownership"]["org_id"]) <= orgs
    assert t["accounts"].loc[t["accounts"]["account_type"] == "individual", "org_id"].isna().all()


def test_no_event_before_signup_or_after_end(world):
    created = world.tables["accounts"].set_index("account_id")["created_at"]
    for name, col in EVENT_TIME.items():
        df = world.tables[name]
        when = df[col]
        assert (when >= df["account_id"].map(created)).all(), name
        assert (when <= END).all(), name
    assert created.max() <= END
    assert created.min() < END - pd.Timedelta(days=180)  # some accounts predate the window
    first_hour = world.tables["api_usage"]["hour"].min()
    assert first_hour >= END - pd.Timedelta(days=180)


def test_ids_are_random_and_reveal_nothing(world):
    acc = world.tables["accounts"]["account_id"]
    assert acc.str.fullmatch(r"acc_[0-9a-f]{16}").all()
    truth = world.truth.set_index("account_id")["is_circumvention"]
    as_int = acc.map(lambda s: int(s[4:12], 16)).to_frame("id_value").set_index(acc)
    assert single_column_aucs(as_int, truth).max() < 0.7


def test_prevalence_and_realistic_labels(world):
    truth = world.truth.set_index("account_id")
    prevalence = truth["is_circumvention"].mean()
    assert 0.01 <= prevalence <= 0.03
    labels = world.tables["labels"].join(truth, on="account_id", rsuffix="_true")
    positives = int(truth["is_circumvention"].sum())
    reviewed_pos = int(labels["is_circumvention"].sum())
    assert 0.2 <= 1 - reviewed_pos / positives <= 0.75  # many true circumventers never reviewed
    assert len(labels) < 0.2 * len(truth)  # most accounts are never reviewed
    assert labels["source"].nunique() >= 3
    false_pos = labels["label"].eq(1) & ~labels["is_circumvention"]
    false_neg = labels["label"].eq(0) & labels["is_circumvention"]
    assert false_pos.any() or false_neg.any()
    assert labels.loc[labels["label"] == 1, "typology"].notna().all()
    assert labels.loc[labels["label"] == 0, "typology"].isna().all()
    # Rule alerts favour the obvious: loud positives are labelled more often than careful ones.
    arche = truth.loc[truth["is_circumvention"], "archetype"]
    careful = arche.str.startswith("careful_evader")
    reviewed = arche.index.isin(labels["account_id"])
    assert reviewed[~careful.to_numpy()].mean() > reviewed[careful.to_numpy()].mean()


def test_every_typology_and_its_innocent_twin_exist(world):
    arche = set(world.truth["archetype"])
    assert set(world.truth["typology"].dropna()) == {
        "reseller",
        "shell_company",
        "proxy_access",
        "exemption_abuse",
    }
    twins = {"zh_dev_tw", "zh_dev_abroad", "legit_sg_hk_company", "legit_channel_partner",
             "cloud_business", "vpn_user", "traveller", "university_exempt"}  # fmt: skip
    assert twins <= arche
    assert any(a.startswith("careful_evader") for a in arche)
    acc = world.tables["accounts"].join(world.truth.set_index("account_id"), on="account_id")
    assert acc.loc[acc["archetype"] == "legit_channel_partner", "is_channel_partner"].all()
    assert acc.loc[acc["archetype"] == "university_exempt", "research_exemption"].mean() > 0.8


def test_careful_evasion_grows_over_time():
    start = END - pd.Timedelta(days=180)
    pop = make_population(np.random.default_rng(0), 40_000, start.value, END.value)
    pos = pop.is_positive()
    late = pop.created_ns > np.median(pop.created_ns[pos])
    assert pop.careful[pos & late].mean() > pop.careful[pos & ~late].mean() + 0.05


def test_ownership_chains_missing_data_and_screening_near_matches(world):
    t = world.tables
    orgs, own = t["organizations"], t["ownership"]
    account_orgs = set(t["accounts"]["org_id"].dropna())
    without = 1 - len(account_orgs & set(own["org_id"])) / len(account_orgs)
    assert 0.15 <= without <= 0.45
    chained = own[(own["owner_type"] == "company") & own["owner_name"].isin(orgs["legal_name"])]
    assert len(chained) > 0  # company -> company ownership chains exist
    listed = t["restricted_entities"]["name"].tolist()
    candidates = pd.concat([orgs["legal_name"], own["owner_name"]]).unique().tolist()
    assert not set(candidates) & set(listed)  # no exact matches: resemblance only
    scores = [process.extractOne(c, listed, scorer=fuzz.token_set_ratio)[1] for c in candidates]
    assert sum(s >= 85 for s in scores) >= 3


@pytest.mark.slow
def test_no_single_raw_column_separates_the_classes(world):
    agg = raw_column_aggregates(world.tables)
    aucs = single_column_aucs(agg, world.truth.set_index("account_id")["is_circumvention"])
    assert len(aucs) > 100
    assert aucs.max() < 0.9, aucs.head(5).to_dict()
    assert aucs.max() > 0.65  # but the raw data does carry signal


def test_cli_writes_tables_and_truth_outside(tmp_path: Path):
    out = tmp_path / "w"
    assert (
        main(["generate", "--out", str(out), "--accounts", "60", "--seed", "1", "--days", "30"])
        == 0
    )
    assert {p.name for p in out.iterdir()} == {f"{n}.parquet" for n in TABLES}
    truth = pd.read_parquet(tmp_path / "w_truth.parquet")
    assert list(truth.columns) == ["account_id", "is_circumvention", "typology", "archetype"]
    assert len(truth) == 60
    csv = tmp_path / "c"
    rc = main(["generate", "--out", str(csv), "--accounts", "40", "--seed", "1", "--format", "csv",
               "--truth", str(tmp_path / "t.csv")])  # fmt: skip
    assert rc == 0 and (csv / "accounts.csv").exists() and (tmp_path / "t.csv").exists()
    hard = tmp_path / "h"
    rc = main(["generate", "--out", str(hard), "--accounts", "60", "--seed", "1", "--days", "30",
               "--scenario", "hard"])  # fmt: skip
    assert rc == 0
    assert not pd.read_parquet(hard / "api_usage.parquet").equals(
        pd.read_parquet(out / "api_usage.parquet")
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--truth", "{out}/truth.parquet"], "inside the data directory"),
        (["--accounts", "0"], "--accounts must be at least 1"),
        (["--days", "3"], "--days must be at least 7"),
        (["--end", "someday"], "is not a date"),
    ],
)
def test_cli_refuses_bad_arguments(tmp_path: Path, capsys, extra: list[str], message: str):
    out = tmp_path / "w"
    args = ["generate", "--out", str(out), "--accounts", "20", "--seed", "1"]
    args += [a.format(out=out) for a in extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (out / "truth.parquet").exists()


def test_cli_refuses_an_unknown_scenario(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--out", str(tmp_path / "w"), "--accounts", "5", "--seed", "1",
              "--scenario", "easy"])  # fmt: skip
    assert exc.value.code == 2
    assert "--scenario: invalid choice: 'easy'" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def _hard_population(n: int = 40_000):
    start = END - pd.Timedelta(days=180)
    rngs = [np.random.default_rng(s) for s in (0, 1)]
    return make_population(rngs[0], n, start.value, END.value, SCENARIOS["hard"], ev_rng=rngs[1])


def test_default_scenario_draws_nothing_extra():
    """The default world is the one earlier releases generated: the scenario stream is unused."""
    start = END - pd.Timedelta(days=180)
    a = make_population(np.random.default_rng(0), 5000, start.value, END.value)
    b = make_population(np.random.default_rng(0), 5000, start.value, END.value,
                        SCENARIOS["default"], ev_rng=np.random.default_rng(99))  # fmt: skip
    assert np.array_equal(a.spec, b.spec) and np.array_equal(a.care, b.care)
    assert not any(m.any() for m in (*a.ev.habits.values(), *b.ev.tells.values()))
    pd.testing.assert_frame_equal(generate_world(300, seed=5).tables["api_usage"],
                                  generate_world(300, seed=5, scenario="default").tables["api_usage"])  # fmt: skip


def test_hard_habits_rise_independently_and_innocents_share_each_tell():
    pop = _hard_population()
    pos, loud = pop.is_positive(), pop.is_positive() & ~pop.careful
    late = pop.created_ns > np.quantile(pop.created_ns[pos], 0.8)
    early = pop.created_ns < np.quantile(pop.created_ns[pos], 0.2)
    habits = np.array([pop.ev.habit(h) for h in HABITS])  # (habit, account)
    hidden = habits.mean(axis=0)
    # Most new circumventers hide most of their trace (fully careful, or most habits taken up).
    assert np.mean(pop.careful[pos & late] | (hidden[pos & late] >= 0.5)) > 0.6
    assert hidden[loud & late].mean() > hidden[loud & early].mean() + 0.3
    # Each habit on its own: pairwise correlations near zero once the time trend is removed.
    cohort = loud & late
    corr = np.corrcoef(habits[:, cohort].astype(float))
    assert np.abs(corr[np.triu_indices(len(HABITS), 1)]).max() < 0.25
    # Every tell is also shown by innocent accounts, and only by innocent ones.
    for h in HABITS:
        tell = pop.ev.tell(h)
        assert tell[~pos].mean() > 0.02 and not tell[pos].any(), h


def test_hard_world_confirmed_accounts_go_quiet_and_reviewers_miss_evaders():
    world = generate_world(6000, seed=3, days=180, end=END, scenario="hard")
    labels = world.tables["labels"]
    confirmed = labels[labels["label"] == 1].set_index("account_id")["labelled_at"]
    assert len(confirmed) > 20
    for name, col in (("api_usage", "hour"), ("logins", "login_at"), ("payments", "paid_at")):
        df = world.tables[name]
        when = df["account_id"].map(confirmed)
        after = df[col] > when + pd.Timedelta(days=3)
        assert not after.any(), (name, int(after.sum()))
    default = generate_world(6000, seed=3, days=180, end=END)

    def careful_confirm_rate(w):
        lab = w.tables["labels"].join(
            w.truth.set_index("account_id"), on="account_id", rsuffix="_true"
        )
        careful = lab[lab["archetype"].str.startswith("careful_evader")]
        return careful["label"].mean()

    assert careful_confirm_rate(world) < careful_confirm_rate(default)
