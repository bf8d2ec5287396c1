"""The feature snapshot store: atomic writes, verified reads, lookup by account id."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from exportguard.features.policy import Policy
from exportguard.features.registry import FEATURE_NAMES
from exportguard.scoring.spec import code_spec
from exportguard.serving.snapshot import (
    DATA_FILE,
    DEFAULT_STORE,
    MANIFEST_FILE,
    STORE_ENV,
    SnapshotError,
    default_store,
    load_snapshot,
    write_snapshot,
)

from factories import make_feature_table

#: the feature spec of the test bundle (the default policy)
SPEC = code_spec(Policy())

AS_OF = pd.Timestamp("2026-06-01")


def test_round_trip_and_manifest(tmp_path: Path) -> None:
    frame = make_feature_table(20, seed=3)
    write_snapshot(frame, tmp_path / "store", AS_OF, "unit-test", feature_spec=SPEC)
    snap = load_snapshot(tmp_path / "store")
    manifest = json.loads((tmp_path / "store" / MANIFEST_FILE).read_text())
    assert manifest["rows"] == 20 and manifest["source"] == "unit-test"
    assert pd.Timestamp(manifest["as_of"]) == AS_OF == snap.as_of
    assert snap.sha256 == manifest["sha256"] and len(snap) == 20
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == sorted(
        [DATA_FILE, MANIFEST_FILE]
    )
    expected = frame.set_index("account_id")[list(FEATURE_NAMES)].to_numpy(dtype=float)
    np.testing.assert_array_equal(snap.frame.to_numpy(), expected)


def test_lookup_keeps_request_order_and_names_unknown_ids(tmp_path: Path) -> None:
    frame = make_feature_table(5, seed=1)
    write_snapshot(frame, tmp_path, AS_OF, "t", feature_spec=SPEC)
    ids = frame["account_id"].tolist()
    found, missing = load_snapshot(tmp_path).lookup([ids[3], "nobody", ids[0]])
    assert found["account_id"].tolist() == [ids[3], ids[0]] and missing == ["nobody"]
    assert list(found.columns) == ["account_id", *FEATURE_NAMES]


def test_rewrite_replaces_the_snapshot(tmp_path: Path) -> None:
    write_snapshot(make_feature_table(5, seed=1), tmp_path, AS_OF, "a", feature_spec=SPEC)
    write_snapshot(
        make_feature_table(7, seed=2),
        tmp_path,
        AS_OF + pd.Timedelta(days=7),
        "b",
        feature_spec=SPEC,
    )
    snap = load_snapshot(tmp_path)
    assert len(snap) == 7 and snap.source == "b"


def test_tampered_parquet_is_refused(tmp_path: Path) -> None:
    write_snapshot(make_feature_table(5), tmp_path, AS_OF, "t", feature_spec=SPEC)
    write_snapshot(make_feature_table(6), tmp_path / "other", AS_OF, "t", feature_spec=SPEC)
    (tmp_path / DATA_FILE).write_bytes((tmp_path / "other" / DATA_FILE).read_bytes())
    with pytest.raises(SnapshotError, match="does not match the recorded"):
        load_snapshot(tmp_path)


def test_missing_store_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match=STORE_ENV):
        load_snapshot(tmp_path / "absent")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.drop(columns=["account_age_days"]), "lacks 1 declared"),
        (lambda f: f.drop(columns=["account_id"]), "no account_id"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "repeats account_id"),
        (lambda f: f.assign(account_age_days=np.inf), "infinite"),
        (lambda f: f.assign(account_age_days="old"), "not numeric"),
    ],
)
def test_bad_frames_are_refused(tmp_path: Path, mutate, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        write_snapshot(mutate(make_feature_table(4)), tmp_path, AS_OF, "t", feature_spec=SPEC)
    assert not (tmp_path / MANIFEST_FILE).exists()


def test_default_store_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)
    assert default_store() == DEFAULT_STORE
    monkeypatch.setenv(STORE_ENV, str(tmp_path))
    assert default_store() == tmp_path
