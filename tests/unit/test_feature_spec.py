"""The feature spec pinned in a bundle: written at export, refused when it does not match."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from exportguard.cli import main
from exportguard.errors import BundleError
from exportguard.features.policy import Policy
from exportguard.features.registry import FEATURES
from exportguard.scoring.bundle import checked_bundle, load_bundle, section_hashes, write_bundle
from exportguard.scoring.scorer import Scorer
from exportguard.scoring.spec import code_spec

from factories import make_feature_table


def _reexport(src: Path, out: Path, *, features=None, policy=None) -> Path:  # type: ignore[no-untyped-def]
    """The bundle at `src` written again, with another feature list or policy."""
    b = load_bundle(src)
    return write_bundle(
        out,
        model_text=b.model_text,
        calibration=b.calibration,
        bands=b.bands,
        features=list(b.features) if features is None else features,
        reference=b.reference,
        metadata={"model_name": "exportguard-test", "model_version": "9"},
        policy=b.policy if policy is None else policy,
    )


def _changed_doc(src: Path) -> list[dict]:
    records = [dict(r) for r in load_bundle(src).features]
    records[3]["doc"] = "an older wording of {value}"
    return records


def test_export_records_the_code_spec_and_it_checks(tiny_bundle: Path) -> None:
    bundle = checked_bundle(tiny_bundle)
    spec = bundle.metadata["feature_spec"]
    assert spec == code_spec(Policy())
    assert spec["n_features"] == len(FEATURES)
    assert spec["horizon"]["fallback"] == ["payments.paid_at", "logins.login_at"]


def test_a_changed_feature_definition_is_refused_naming_it(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    path = _reexport(tiny_bundle, tmp_path / "b", features=_changed_doc(tiny_bundle))
    load_bundle(path)  # intact as a file: only scoring with this code is refused
    with pytest.raises(BundleError, match=rf"feature `{FEATURES[3].name}` changed its doc"):
        checked_bundle(path)
    with pytest.raises(BundleError, match="other feature definitions"):
        Scorer.from_path(path)


def test_a_policy_other_than_the_models_is_refused_naming_the_key(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    other = Policy().model_copy(update={"restricted_countries": ("CU", "IR")})
    with pytest.raises(BundleError, match=r"policy key\(s\) \['restricted_countries'\]"):
        checked_bundle(tiny_bundle, other)
    trained_with_other = _reexport(tiny_bundle, tmp_path / "b", policy=other)
    assert checked_bundle(trained_with_other, other).policy == other


def test_a_bundle_without_a_spec_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    path = tmp_path / "old"
    shutil.copytree(tiny_bundle, path)
    meta = json.loads((path / "metadata.json").read_text())
    del meta["feature_spec"]
    meta["sections"] = section_hashes(meta)  # a consistent bundle of an older release
    from exportguard.scoring.bundle import bundle_digest

    meta["bundle_sha256"] = bundle_digest(meta["files"], meta["sections"])
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="records no feature spec"):
        checked_bundle(path)


def test_batch_and_serve_refuse_a_mismatched_spec(
    tiny_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _reexport(tiny_bundle, tmp_path / "b", features=_changed_doc(tiny_bundle))
    table = tmp_path / "features.parquet"
    make_feature_table(50, seed=3).to_parquet(table, index=False)
    argv = ["batch", "--features", str(table), "--out", str(tmp_path / "out")]
    code = main([*argv, "--model", str(path), "--as-of", "2026-10-01", "--no-snapshot"])
    err = capsys.readouterr().err
    assert code == 2 and f"feature `{FEATURES[3].name}` changed its doc" in err
    assert "Traceback" not in err and not (tmp_path / "out" / "runs").exists()
    monkeypatch.setenv("EXPORTGUARD_API_TOKENS", "ci=" + "t" * 40)
    code = main(["serve", "--model", str(path), "--audit-log", str(tmp_path / "a.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "other feature definitions" in err and "Traceback" not in err
