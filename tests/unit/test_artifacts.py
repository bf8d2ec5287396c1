"""Verified artifacts: files first, manifest last, every hash checked on load."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from exportguard.fileio import ArtifactError, read_artifact, write_artifact
from exportguard.training.config import Params
from exportguard.training.inputs import FeatureSet, load_feature_set, save_feature_set


def _write(tmp_path: Path) -> Path:
    write_artifact(
        tmp_path, {"a.bin": lambda fh: fh.write(b"alpha"), "b.bin": lambda fh: fh.write(b"b")},
        {"kind": "test"}, "manifest.json",
    )  # fmt: skip
    return tmp_path


def test_manifest_lists_every_file_and_round_trips(tmp_path: Path) -> None:
    manifest = read_artifact(_write(tmp_path), "manifest.json", "test artifact", "rewrite it")
    assert manifest["kind"] == "test" and set(manifest["files"]) == {"a.bin", "b.bin"}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "a.bin").write_bytes(b"alphA"), r"a.bin: sha256 .* changed after"),
        (lambda d: (d / "b.bin").unlink(), "b.bin: file of the test artifact is missing"),
        (
            lambda d: (d / "manifest.json").unlink(),
            "no manifest.json, so no complete test artifact",
        ),
        (lambda d: (d / "manifest.json").write_text("{"), "unreadable test artifact manifest"),
    ],
)
def test_damage_is_refused_by_name(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    damage(_write(tmp_path))
    with pytest.raises(ArtifactError, match=message):
        read_artifact(tmp_path, "manifest.json", "test artifact", "rewrite it")


def test_a_training_set_with_an_edited_table_is_refused(tmp_path: Path) -> None:
    frame = pd.DataFrame({"account_id": ["a", "b"], "x": [1.0, 2.0]})
    fs = FeatureSet(frame, frame, pd.Timestamp("2026-06-01"), "f" * 64)
    params = Params()
    save_feature_set(fs, tmp_path / "ts", params)
    again = load_feature_set(tmp_path / "ts", params, None)
    pd.testing.assert_frame_equal(again.population, frame)
    frame.assign(x=[1.0, 3.0]).to_parquet(tmp_path / "ts" / "population.parquet", index=False)
    with pytest.raises(ArtifactError, match="population.parquet: sha256"):
        load_feature_set(tmp_path / "ts", params, None)
    assert json.loads((tmp_path / "ts" / "manifest.json").read_text())["population"] == 2
