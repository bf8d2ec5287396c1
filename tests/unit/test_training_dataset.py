"""Training examples are point in time: nothing dated at or after a label's time leaks in."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from exportguard.features.contract import read_tables
from exportguard.features.matrix import model_matrix
from exportguard.features.tables import RawTables
from exportguard.synth.world import generate_world, write_world
from exportguard.training.config import ExamplesParams, UnreviewedParams
from exportguard.training.dataset import (
    LABELLED,
    PRESUMED,
    attach_features,
    example_requests,
    population_requests,
    presumed_negative_requests,
)

PARAMS = ExamplesParams(unreviewed=UnreviewedParams(ratio=2.0, seed=5))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[RawTables, pd.Timestamp]:
    out = tmp_path_factory.mktemp("world")
    write_world(generate_world(2000, seed=11, days=120), out / "w", out / "truth.parquet")
    tables, report = read_tables(out / "w")
    return tables, report.horizon


def test_labelled_examples_are_dated_at_their_decision(world) -> None:  # type: ignore[no-untyped-def]
    tables, horizon = world
    ex = example_requests(tables, horizon, PARAMS)
    labelled = ex.loc[ex["kind"] == LABELLED]
    assert len(labelled) == int((tables.labels["labelled_at"] < horizon).sum())
    merged = labelled.merge(
        tables.labels, left_on=["account_id", "as_of"], right_on=["account_id", "labelled_at"]
    )
    assert len(merged) == len(labelled)
    assert (merged["label_x"] == merged["label_y"]).all()
    assert ex["as_of"].is_monotonic_increasing


def test_presumed_negatives_are_unreviewed_at_their_time_and_seeded(world) -> None:  # type: ignore[no-untyped-def]
    tables, horizon = world
    args = (tables.accounts, tables.labels, horizon, 300, 0.5, 7.0, 5)
    first = presumed_negative_requests(*args)
    assert first.equals(presumed_negative_requests(*args))
    assert (first["kind"] == PRESUMED).all() and (first["label"] == 0).all()
    created = first["account_id"].map(tables.accounts.set_index("account_id")["created_at"])
    assert (first["as_of"] >= created + pd.Timedelta(days=7) - pd.Timedelta(minutes=1)).all()
    assert (first["as_of"] < horizon).all()
    assert (first["first_labelled_at"].isna() | (first["first_labelled_at"] > first["as_of"])).all()
    assert not first["account_id"].duplicated().any()


def _tamper_after(tables: RawTables, t0: pd.Timestamp) -> RawTables:
    """Rewrite every row dated at or after t0 into a loud red flag, and add late labels."""
    usage = tables.api_usage.copy()
    late = usage["hour"] >= t0
    usage.loc[late, "ip_country"] = "CN"
    usage.loc[late, "network_type"] = "tor"
    usage.loc[late, ["requests", "input_tokens"]] *= 9
    logins = tables.logins.copy()
    late = logins["login_at"] >= t0
    logins.loc[late, "ip_country"] = "RU"
    logins.loc[late, "browser_language"] = "zh-CN"
    payments = tables.payments.copy()
    late = payments["paid_at"] >= t0
    payments.loc[late, "issuer_country"] = "IR"
    payments.loc[late, "status"] = "disputed"
    extra = pd.DataFrame(
        {
            "account_id": tables.accounts["account_id"],
            "label": 1,
            "labelled_at": t0 + pd.Timedelta(hours=1),
            "source": "tip",
            "typology": "reseller",
        }
    ).astype(tables.labels.dtypes.to_dict())
    labels = pd.concat([tables.labels, extra], ignore_index=True)
    return replace(tables, api_usage=usage, logins=logins, payments=payments, labels=labels)


def test_rows_after_the_label_time_do_not_change_the_training_matrix(world) -> None:  # type: ignore[no-untyped-def]
    tables, horizon = world
    requests = example_requests(tables, horizon, PARAMS)
    t0 = requests["as_of"].quantile(0.6)
    before = requests.loc[requests["as_of"] <= t0].reset_index(drop=True)
    assert (before["kind"] == LABELLED).sum() >= 5
    clean = attach_features(tables, before, None)
    tampered = attach_features(_tamper_after(tables, t0), before, None)
    assert len(clean) == len(before) == len(tampered)
    np.testing.assert_array_equal(model_matrix(clean), model_matrix(tampered))
    # and the examples themselves: late labels add later examples, never earlier ones
    again = example_requests(_tamper_after(tables, t0), horizon, PARAMS)
    early_again = again.loc[(again["as_of"] <= t0) & (again["kind"] == LABELLED)]
    assert (
        early_again["account_id"].tolist()
        == before.loc[before["kind"] == LABELLED, "account_id"].tolist()
    )


def test_population_marks_accounts_reviewed_before(world) -> None:  # type: ignore[no-untyped-def]
    tables, horizon = world
    pop = population_requests(tables, horizon)
    reviewed = set(tables.labels.loc[tables.labels["labelled_at"] < horizon, "account_id"])
    assert set(pop.loc[pop["reviewed_before"], "account_id"]) == reviewed
    assert len(pop) == int((tables.accounts["created_at"] < horizon).sum())


def test_examples_before_sign_up_are_reported_and_left_out(world, caplog) -> None:  # type: ignore[no-untyped-def]
    tables, horizon = world
    acc = tables.accounts.iloc[0]
    requests = pd.DataFrame(
        {
            "account_id": [acc["account_id"], acc["account_id"]],
            "as_of": [acc["created_at"] - pd.Timedelta(days=1), horizon],
            "label": [0, 0],
        }
    )
    out = attach_features(tables, requests, None)
    assert len(out) == 1 and out["as_of"].iloc[0] == horizon
    assert "precede its sign-up" in caplog.text


def test_no_labels_is_a_clear_error(world, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from exportguard.errors import ExportguardError

    tables, horizon = world
    empty = replace(tables, labels=tables.labels.iloc[:0])
    with pytest.raises(ExportguardError, match="no label decided before"):
        example_requests(empty, horizon, PARAMS)
