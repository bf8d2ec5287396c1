"""MLflow tracking and the promotion gate, on a throwaway SQLite store in a temp directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_data import END, make_examples, make_population, small_params

from exportguard.cli import main
from exportguard.features.registry import FEATURE_NAMES
from exportguard.scoring.bundle import load_bundle
from exportguard.training.promote import gate, promote
from exportguard.training.tracking import connect, log_run

PARAMS = small_params()


def _log(result, project: Path) -> str:  # type: ignore[no-untyped-def]
    meta = {"model_name": "exportguard", "model_version": "unregistered", "data_fingerprint": "x"}
    tags = {"data_fingerprint": "x" * 64, "git_commit": "abc"}
    logged = log_run(result, PARAMS, meta, project_dir=project, tags=tags, register=True)
    assert logged.model_version is not None
    return logged.model_version


#: a deliberately worse recipe: stumps, a tiny learning rate, a tenth of the features per tree
WORSE = small_params(
    train={
        "num_threads": 1, "num_boost_round": 40, "min_boost_rounds": 5,
        "early_stopping_rounds": 5, "num_leaves": 2, "learning_rate": 0.01,
        "feature_fraction": 0.1, "min_data_in_leaf": 200,
    }
)  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from exportguard.training.inputs import FeatureSet, save_feature_set
    from exportguard.training.pipeline import run_training

    project = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        pop, truth = make_population()
        examples = make_examples()
        good = run_training(examples, pop, END, PARAMS, truth)
        worse = run_training(examples, pop, END, WORSE, truth)
        fs = FeatureSet(examples, pop, END, "x" * 64)
        save_feature_set(fs, project / "trainset", PARAMS)
        v_good = _log(good, project)
        yield project, mp, good, worse, v_good, fs


@pytest.mark.slow
def test_run_logs_params_metrics_tags_and_artifacts(store) -> None:  # type: ignore[no-untyped-def]
    project, _, good, _, version, fs = store
    client = connect(project)
    mv = client.get_model_version("exportguard", version)
    run = client.get_run(mv.run_id)
    assert run.data.params["train.learning_rate"] == str(PARAMS.train.learning_rate)
    assert run.data.metrics["test.model.ap"] == pytest.approx(good.metrics["test"]["model"]["ap"])
    assert "truth.logistic.ap" in run.data.metrics and "truth.red_flags.ap" in run.data.metrics
    assert run.data.tags["data_fingerprint"] == "x" * 64 and run.data.tags["git_commit"] == "abc"
    listed = {a.path for a in client.list_artifacts(mv.run_id)}
    assert {"plots", "bundle", "holdout", "baselines", "metrics.json", "features.json"} <= listed
    plots = {Path(a.path).name for a in client.list_artifacts(mv.run_id, "plots")}
    assert plots == {
        "pr_curve.png",
        "calibration.png",
        "shap_summary.png",
        "feature_importance.png",
    }
    assert (project / "mlflow.db").is_file() and (project / "mlruns").is_dir()


@pytest.mark.slow
def test_first_model_becomes_champion_and_export_verifies(store) -> None:  # type: ignore[no-untyped-def]
    project, _, good, _, version, fs = store
    out = project / "models" / "champion"
    result, bundle = promote(PARAMS, None, out, project, fs)
    assert result.passed and result.champion is None
    assert result.additivity_error < 1e-9
    loaded = load_bundle(out, expected_features=FEATURE_NAMES)
    assert loaded.version == version and loaded.metadata["alias"] == "champion"
    assert loaded.model_text == good.booster.model_to_string()
    assert loaded.metadata["trained_through"] == good.trained_through.isoformat()
    assert loaded.metadata["train_params"] == PARAMS.train.model_dump(mode="json")
    assert loaded.reference["features"].keys() == set(FEATURE_NAMES)
    client = connect(project)
    assert str(client.get_model_version_by_alias("exportguard", "champion").version) == version


@pytest.mark.slow
def test_worse_candidate_is_refused_with_nonzero_exit(store, capsys) -> None:  # type: ignore[no-untyped-def]
    project, mp, _, worse, version, fs = store
    out = project / "models" / "champion"
    if not out.exists():
        promote(PARAMS, version, out, project, fs)
    before = load_bundle(out).sha256
    v_worse = _log(worse, project)
    mp.chdir(project)
    params_file = project / "params.yaml"
    params_file.write_text(
        "train: {num_threads: 1}\nbands: {review_capacity_per_week: 40}\n", encoding="utf-8"
    )
    feats = ["--features", str(project / "trainset")]
    code = main(
        ["promote", "--version", v_worse, *feats, "--params", str(params_file), "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert f"version {v_worse} not promoted" in err and "worse than the champion" in err
    client = connect(project)
    assert str(client.get_model_version_by_alias("exportguard", "champion").version) == version
    assert load_bundle(out).sha256 == before  # the export is untouched
    tag = client.get_model_version("exportguard", v_worse).tags["promotion_gate"]
    assert tag.startswith("refused")
    # re-promoting the champion's own version passes (not worse than itself)
    assert (
        main(
            [
                "promote",
                "--version",
                version,
                *feats,
                "--params",
                str(params_file),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert main(["promote", "--version", "999", *feats, "--params", str(params_file)]) == 2
    assert main(["promote", "--version", version, "--params", str(params_file)]) == 2  # no set


def test_gate_rules() -> None:
    cand = {"ap": 0.50, "recall_at_k": 0.40}
    champ = {"ap": 0.52, "recall_at_k": 0.40}
    assert gate(cand, None, 0.0, 1e-12, 1e-6).passed
    refused = gate(cand, champ, 0.0, 1e-12, 1e-6)
    assert not refused.passed and "ap 0.5000 is worse" in refused.reasons[0]
    assert gate(cand, champ, 0.05, 1e-12, 1e-6).passed
    broken = gate(cand, None, 0.0, 1e-3, 1e-6)
    assert not broken.passed and "do not add up" in broken.reasons[0]
