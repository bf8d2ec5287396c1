"""Bundle integrity: every value that can change a decision is inside the digest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from exportguard.batch.run import BatchConfig, plan_run
from exportguard.scoring.bundle import (
    BundleError,
    bundle_digest,
    load_bundle,
    section_hashes,
)

from factories import make_feature_table


def _copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    return copy


def _edit_meta(path: Path, edit) -> dict:  # type: ignore[no-untyped-def]
    meta = json.loads((path / "metadata.json").read_text())
    edit(meta)
    (path / "metadata.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return meta


def _edit_json_file(path: Path, name: str, edit) -> None:  # type: ignore[no-untyped-def]
    data = json.loads((path / name).read_text())
    edit(data)
    (path / name).write_text(json.dumps(data, indent=1))


def _set_bands(meta: dict) -> None:
    meta["bands"] = {"high": 0.9999, "review": 0.9998}


def test_honest_bundle_loads_with_its_policy(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert bundle.policy.restricted_countries  # policy.json travels with the model
    assert set(bundle.sections) >= {"bands", "model_name", "model_version"}
    assert bundle.metadata["bundle_sha256"] == bundle.sha256


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("bands", lambda p: _edit_meta(p, _set_bands), "`bands` changed"),
        (
            "metrics",
            lambda p: _edit_meta(p, lambda m: m.update(metrics={"ap": 0.99})),
            "`metrics` changed",
        ),
        (
            "added key",
            lambda p: _edit_meta(p, lambda m: m.update(note="x")),
            "`note` was added",
        ),
        (
            "removed key",
            lambda p: _edit_meta(p, lambda m: m.pop("model_version")),
            "`model_version` was removed",
        ),
        (
            "calibration",
            lambda p: _edit_json_file(
                p, "calibration.json", lambda c: c.update(y=[0.0] * (len(c["y"]) - 1) + [1.0])
            ),
            "calibration.json",
        ),
        (
            "policy",
            lambda p: _edit_json_file(
                p, "policy.json", lambda c: c.update(restricted_countries=["CN"])
            ),
            "policy.json",
        ),
        (
            "features",
            lambda p: _edit_json_file(p, "features.json", lambda c: c.reverse()),
            "features.json",
        ),
        (
            "model",
            lambda p: (p / "model.txt").write_text((p / "model.txt").read_text() + "\n"),
            "model.txt",
        ),
    ],
)
def test_editing_any_decision_value_is_refused_naming_it(
    tiny_bundle, tmp_path, name, edit, message
):
    copy = _copy(tiny_bundle, tmp_path)
    edit(copy)
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


def test_old_format_without_metadata_digest_is_refused(tiny_bundle, tmp_path):
    copy = _copy(tiny_bundle, tmp_path)
    _edit_meta(copy, lambda m: [m.pop(k) for k in ("format_version", "sections")])
    with pytest.raises(BundleError, match="bundle format 1.*re-export"):
        load_bundle(copy)
    legacy = load_bundle(copy, legacy_ok=True)  # the promotion gate may still compare it
    assert legacy.model_text == load_bundle(tiny_bundle).model_text
    (copy / "model.txt").write_text("tampered")
    with pytest.raises(BundleError, match="model.txt"):  # its files are still hash-checked
        load_bundle(copy, legacy_ok=True)


def _forge(meta: dict) -> None:
    """Edit the bands and recompute every hash, as a careful tamperer would."""
    _set_bands(meta)
    meta["sections"] = section_hashes(meta)
    meta["bundle_sha256"] = bundle_digest(meta["files"], meta["sections"])


def test_rehashed_edit_gets_a_new_sha256_and_a_new_batch_run_id(tiny_bundle, tmp_path):
    """A tampered run committed first cannot make the honest rerun look already done."""
    features = tmp_path / "f.parquet"
    make_feature_table(50, seed=3).assign(as_of="2026-09-01").to_parquet(features)
    honest = plan_run(features, BatchConfig(out=tmp_path / "out", model=tiny_bundle))
    forged = _copy(tiny_bundle, tmp_path)
    _edit_meta(forged, _forge)
    bundle = load_bundle(forged)
    assert bundle.bands.high == 0.9999
    assert bundle.sha256 != load_bundle(tiny_bundle).sha256
    tampered = plan_run(features, BatchConfig(out=tmp_path / "out", model=forged))
    assert tampered.info.run_id != honest.info.run_id
