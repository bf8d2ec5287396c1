"""End to end on a small generated world: examples -> train -> evaluate -> promote (CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exportguard.cli import main
from exportguard.features.registry import FEATURE_NAMES
from exportguard.scoring.bundle import load_bundle

PARAMS = """
examples: {unreviewed: {ratio: 2.0}}
split: {valid_days: 45, test_days: 45, gap_days: 7, n_folds: 2, fold_step_days: 30,
        min_eval_positives: 3}
train: {num_threads: 2, num_boost_round: 200}
bands: {review_capacity_per_week: 25}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        (root / "params.yaml").write_text(PARAMS, encoding="utf-8")
        assert main(["generate", "--out", "data/world", "--accounts", "5000", "--seed", "3"]) == 0
        yield root


@pytest.mark.slow
def test_train_evaluate_promote_end_to_end(project: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    truth = "data/world_truth.parquet"
    assert main(["examples", "--data", "data/world", "--out", "data/trainset"]) == 0
    manifest = json.loads((project / "data/trainset/manifest.json").read_text())
    assert manifest["examples"] > 0 and manifest["population"] == 5000

    args = ["--data", "data/world", "--features", "data/trainset", "--truth", truth]
    code = main(["train", *args, "--out", "models/candidate", "--out-metrics", "m.json"])
    out = capsys.readouterr().out
    assert code == 0
    assert "logistic regr." in out and "red-flag count" in out
    assert "Never-reviewed accounts vs ground truth" in out
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in out
    assert "registered as exportguard version 1" in out
    metrics = json.loads((project / "m.json").read_text())
    assert metrics["truth"]["model"]["n"] > 4000
    load_bundle(project / "models/candidate/bundle", expected_features=FEATURE_NAMES)

    assert main(["evaluate", *args, "--run", "models/candidate", "--out-metrics", "e.json"]) == 0
    summary = json.loads((project / "e.json").read_text())
    assert summary["truth"]["model"]["ap"] == pytest.approx(
        metrics["truth"]["model"]["ap"], abs=1e-4
    )

    assert main(["promote", "--features", "data/trainset"]) == 0
    assert "is the first champion" in capsys.readouterr().out
    bundle = load_bundle(project / "models/champion", expected_features=FEATURE_NAMES)
    assert bundle.version == "1"
    assert bundle.model_text == load_bundle(project / "models/candidate/bundle").model_text

    # retraining on the same data and params gives a byte-identical model, which passes the gate
    assert main(["train", *args, "--out", "models/candidate2"]) == 0
    again = load_bundle(project / "models/candidate2/bundle")
    assert again.model_text.encode() == bundle.model_text.encode()
    assert main(["promote", "--features", "data/trainset"]) == 0
    assert "passed the gate" in capsys.readouterr().out


@pytest.mark.slow
def test_bad_input_is_one_clear_error(project: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(project)
    assert main(["train", "--data", "nowhere", "--no-track"]) == 2
    assert "nowhere" in capsys.readouterr().err
    (project / "typo.yaml").write_text("train: {learnng_rate: 0.1}\n", encoding="utf-8")
    assert main(["train", "--data", "data/world", "--params", "typo.yaml", "--no-track"]) == 2
    assert "train.learnng_rate" in capsys.readouterr().err
    assert main(["train", "--no-track"]) == 2
    assert "--data DIR" in capsys.readouterr().err
    assert main(["train", "--data", "data/world", "--truth", "missing.parquet"]) == 2
    assert "missing.parquet" in capsys.readouterr().err
    stale = project / "stale"
    stale.mkdir(exist_ok=True)
    (stale / "manifest.json").write_text(
        json.dumps({"params_hash": "0" * 64, "files": {}}), encoding="utf-8"
    )
    assert main(["train", "--features", str(stale), "--no-track"]) == 2
    assert "rebuild it with `exportguard examples`" in capsys.readouterr().err
