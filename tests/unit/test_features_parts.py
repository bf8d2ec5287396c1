"""The harder parts on their own: ownership chains and the 50% rule, screening similarity,
the prefix cap of the link graph, and point-in-time behaviour on a generated world."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tiny_world import T, tiny_world

from exportguard.features.compute import account_features, features_at
from exportguard.features.names import best_token_set_ratio, normalise_name
from exportguard.features.tables import TIME_COLUMNS


def _with_ownership(rows: list[tuple]) -> pd.DataFrame:
    world = tiny_world()
    own = pd.DataFrame(rows, columns=world.ownership.columns)
    return world.with_tables(ownership=own)


O1_BASE = [
    ("O1", "Wang Wei", "person", "CN", 30.0),
    ("O1", "Middle Holdings", "company", "SG", 40.0),
    ("O1", "Tan Ah Kow", "person", "SG", 30.0),
]


def _effective(world, account: str = "A2", when: pd.Timestamp = T) -> float:
    frame = features_at(world, pd.DataFrame({"account_id": [account], "as_of": [when]}))
    return float(frame["restricted_ownership_effective"].iloc[0])


def test_below_half_the_stake_is_multiplied_along_the_chain():
    world = _with_ownership(
        [*O1_BASE, ("O5", "Li Na", "person", "CN", 30.0), ("O5", "Zhao Lei", "person", "RU", 15.0)]
    )
    assert _effective(world) == pytest.approx(0.3 + 0.4 * 0.45)


def test_half_or_more_makes_the_company_restricted_in_full():
    world = _with_ownership(
        [*O1_BASE, ("O5", "Li Na", "person", "CN", 30.0), ("O5", "Zhao Lei", "person", "RU", 20.0)]
    )
    assert _effective(world) == pytest.approx(0.3 + 0.4)


def test_chain_through_a_company_not_yet_incorporated_is_unresolved():
    world = tiny_world()
    orgs = world.organizations.copy()
    orgs.loc[orgs["org_id"] == "O5", "incorporated_at"] = pd.Timestamp("2026-02-10")
    world = world.with_tables(organizations=orgs)
    assert _effective(world, when=pd.Timestamp("2026-02-05")) == pytest.approx(0.3)
    assert _effective(world, when=T) == pytest.approx(0.7)


def test_ownership_cycles_terminate_and_shares_are_capped():
    world = _with_ownership(
        [
            ("O1", "Wang Wei", "person", "CN", 80.0),
            ("O1", "Middle Holdings", "company", "CN", 60.0),  # bad data: stakes sum to 140%
            ("O5", "Lion Star Trading", "company", "SG", 100.0),  # O1 owns O5 owns O1
        ]
    )
    assert _effective(world) == 1.0


def test_direct_restricted_stake_is_zero_when_no_owner_is_restricted():
    world = _with_ownership([("O1", "Tan Ah Kow", "person", "SG", 100.0)])
    frame = account_features(world, T).set_index("account_id")
    assert frame.loc["A2", "restricted_ownership_max_direct"] == 0.0
    assert frame.loc["A2", "restricted_ownership_effective"] == 0.0
    assert np.isnan(frame.loc["A3", "restricted_ownership_effective"])  # O2 has no rows now


def test_name_normalisation():
    assert normalise_name("Lion Star Trading Pte. Ltd.") == "lion star trading"
    assert normalise_name("DELTA-PRISM K.K.") == "delta prism"
    assert normalise_name(None) == ""


def test_fast_token_set_ratio_is_exact():
    from rapidfuzz import fuzz, process

    rng = np.random.default_rng(0)
    words = ["dragon", "parent", "shenzhen", "tech", "data", "lion", "star", "ai", "wei", "na"]
    make = lambda k: [" ".join(rng.choice(words, rng.integers(1, 4))) for _ in range(k)]  # noqa: E731
    queries, choices = make(300), make(40)
    slow = process.cdist(queries, choices, scorer=fuzz.token_set_ratio).max(axis=1) / 100
    np.testing.assert_allclose(best_token_set_ratio(queries, choices), slow, atol=1e-6)


def _prefix_world():
    """Prefix PZ is used by A4 (02-22), A1 (02-23), A2 (02-24), then A3 (02-27); nothing
    else links A4 to anybody."""
    world = tiny_world()
    rows = [
        (acc, "KZ", pd.Timestamp(day), "PZ", "US", 16509, "hosting", 1, 10, 10, 0, "en", 1.0)
        for acc, day in [("A4", "2026-02-22"), ("A1", "2026-02-23"), ("A2", "2026-02-24"),
                         ("A3", "2026-02-27")]
    ]  # fmt: skip
    usage = pd.concat([world.api_usage, pd.DataFrame(rows, columns=world.api_usage.columns)])
    return world.with_tables(api_usage=usage.reset_index(drop=True))


def test_prefix_shared_by_too_many_accounts_links_nobody():
    world = _prefix_world()
    linked = account_features(world, T, max_prefix_accounts=4).set_index("account_id")
    capped = account_features(world, T, max_prefix_accounts=3).set_index("account_id")
    assert linked.loc["A4", "linked_component_size"] == 3
    assert capped.loc["A4", "linked_component_size"] == 0
    # on 02-25 only three accounts had used PZ: under a cap of 3 it still links A4 to A1
    # (and through A1 to A2 and A3); from A3's arrival on 02-27 on it links nobody
    times = pd.to_datetime(
        ["2026-02-25 00:00:00", "2026-02-27 00:00:00", "2026-02-27 00:00:01", "2026-03-01 00:00:00"]
    )
    at = features_at(
        world, pd.DataFrame({"account_id": "A4", "as_of": times}), max_prefix_accounts=3
    )
    assert list(at["linked_component_size"]) == [3, 3, 0, 0]
    assert list(at["linked_confirmed_positives"]) == [1, 1, 0, 0]


def _naive_components(n_acc, links, now):
    """Breadth-first search over links valid at `now` (time < now <= expiry)."""
    adj: dict[int, set[int]] = {}
    for a, e, t, x in links:
        if t < now <= x:
            adj.setdefault(a, set()).add(("e", e))
            adj.setdefault(("e", e), set()).add(a)

    def comp(a):
        seen, todo = {a}, [a]
        while todo:
            for nb in adj.get(todo.pop(), ()):
                if nb not in seen:
                    seen.add(nb)
                    todo.append(nb)
        return {x for x in seen if not isinstance(x, tuple)}

    return comp


@pytest.mark.parametrize("rebuild_links", [1, 10**9])  # always rebuild / always incremental
def test_offline_components_match_a_naive_search(monkeypatch, rebuild_links):
    from exportguard.features import components

    monkeypatch.setattr(components, "REBUILD_LINKS", rebuild_links)
    rng = np.random.default_rng(5)
    n_acc, n_ent, n_links = 40, 25, 70
    acc = rng.integers(0, n_acc, n_links)
    ent = rng.integers(0, n_ent, n_links)
    time = rng.integers(0, 100, n_links).astype(np.int64)
    expires = np.where(rng.random(n_links) < 0.2, rng.integers(0, 100, n_links), components.NEVER)
    first_positive = np.where(
        rng.random(n_acc) < 0.3, rng.integers(0, 100, n_acc), components.NEVER
    )
    graph = components.OfflineComponents(n_acc)
    graph.add_links("thing", acc, ent, time, expires=expires.astype(np.int64))
    req_acc = rng.integers(0, n_acc, 200)
    req_asof = rng.integers(1, 110, 200).astype(np.int64)
    size, pos = graph.answer(req_acc, req_asof, first_positive.astype(np.int64))
    links = list(zip(acc, ent, time, expires, strict=True))
    for r in range(200):
        members = _naive_components(n_acc, links, req_asof[r])(int(req_acc[r]))
        others = members - {int(req_acc[r])}
        assert size[r] == len(others)
        assert pos[r] == sum(first_positive[o] < req_asof[r] for o in others)


@pytest.fixture(scope="module")
def generated():
    synth = pytest.importorskip("exportguard.synth.world")
    world = synth.generate_world(400, seed=11, days=120)
    from exportguard.features.tables import RawTables

    return RawTables(**world.tables)


def _truncate(tables, as_of):
    """Drop every row dated at or after as_of (organisations with unknown dates stay)."""
    out = {}
    for name, col in TIME_COLUMNS.items():
        df = tables.table(name)
        if df is not None:
            keep = df[col] < as_of
            if name == "organizations":
                keep |= df[col].isna()
            out[name] = df[keep].reset_index(drop=True)
    return tables.with_tables(**out)


def test_generated_world_truncated_and_full_agree(generated):
    as_of = generated.horizon() - pd.Timedelta(days=35)
    full = account_features(generated, as_of)
    cut = account_features(_truncate(generated, as_of), as_of)
    pd.testing.assert_frame_equal(full, cut)


def test_generated_world_many_times_in_one_pass(generated):
    end = generated.horizon()
    times = [end - pd.Timedelta(days=d) for d in (90, 60, 33.5, 10, 0)]
    parts, expected = [], []
    for when in times:
        table = account_features(generated, when)
        expected.append(table.assign(as_of=when))
        parts.append(table[["account_id"]].assign(as_of=when))
    requests = pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=0)
    at = features_at(generated, requests)
    want = (
        pd.concat(expected)
        .set_index(["account_id", "as_of"])
        .loc[list(zip(requests["account_id"], requests["as_of"], strict=True))]
    )
    got = at.set_index(["account_id", "as_of"])
    pd.testing.assert_frame_equal(got, want[got.columns], check_index_type=False)
