"""Output shape and missing data: exact columns, float64, NaN where a source is absent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tiny_world import T, tiny_world

from exportguard.features.compute import account_features, features_at
from exportguard.features.org import ORG_FEATURES
from exportguard.features.policy import Policy
from exportguard.features.registry import FEATURE_NAMES, FEATURES


def test_columns_and_dtypes_are_exact():
    frame = account_features(tiny_world(), T)
    assert list(frame.columns) == ["account_id", *FEATURE_NAMES]
    assert len(FEATURE_NAMES) == len(FEATURES) >= 45
    assert all(frame[n].dtype == np.float64 for n in FEATURE_NAMES)
    assert list(frame["account_id"]) == sorted(frame["account_id"])
    assert not np.isinf(frame[list(FEATURE_NAMES)].to_numpy()).any()


def test_missing_optional_tables_give_nan_org_features():
    world = tiny_world().with_tables(organizations=None, ownership=None, restricted_entities=None)
    frame = account_features(world, T).set_index("account_id")
    assert frame[list(ORG_FEATURES)].isna().all().all()
    # freemail needs only accounts; address links are gone, the other links remain
    assert frame.loc["A2", "freemail_organization"] == 1.0
    assert frame.loc["A2", "linked_component_size"] == 2  # A2-D1-A1-I1-A3


def test_ownership_absent_but_organisations_present():
    frame = account_features(tiny_world().with_tables(ownership=None), T).set_index("account_id")
    assert (
        frame[["restricted_ownership_effective", "restricted_ownership_max_direct"]]
        .isna()
        .all()
        .all()
    )
    assert frame.loc["A2", "orgs_at_registered_address"] == 2
    # without ownership rows, only legal names are screened
    assert frame.loc["A3", "restricted_entity_name_similarity"] < 1.0


def test_empty_activity_tables_give_nan_shares_and_zero_counts():
    w = tiny_world()
    world = w.with_tables(
        api_usage=w.api_usage.iloc[:0], logins=w.logins.iloc[:0], payments=w.payments.iloc[:0]
    )
    frame = account_features(world, T)
    assert frame["restricted_traffic_share_30d"].isna().all()
    assert frame["failed_payment_rate"].isna().all()
    assert (frame["api_keys_30d"] == 0).all() and (frame["log_tokens_30d"] == 0).all()


def test_no_account_before_as_of_gives_an_empty_table():
    frame = account_features(tiny_world(), pd.Timestamp("2020-01-01"))
    assert len(frame) == 0 and list(frame.columns) == ["account_id", *FEATURE_NAMES]


def test_policy_changes_the_restricted_lists():
    policy = Policy(restricted_countries=("US",), intermediary_countries=("CN",))
    frame = account_features(tiny_world(), T, policy).set_index("account_id")
    assert frame.loc["A1", "restricted_traffic_share_30d"] == pytest.approx(0.4)
    assert frame.loc["A1", "intermediary_traffic_share_30d"] == pytest.approx(0.6)


def test_requests_without_required_columns_are_refused():
    with pytest.raises(ValueError, match="as_of"):
        features_at(tiny_world(), pd.DataFrame({"account_id": ["A1"]}))
    with pytest.raises(ValueError, match="no as_of"):
        features_at(tiny_world(), pd.DataFrame({"account_id": ["A1"], "as_of": [pd.NaT]}))
