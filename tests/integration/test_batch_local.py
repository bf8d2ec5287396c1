"""Batch rescoring end to end on the local engine: parity, quarantine, resume, reports, snapshot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from exportguard.batch import rows as batch_rows
from exportguard.batch.run import BatchConfig, run_batch
from exportguard.batch.store import read_batch_output
from exportguard.cli import main
from exportguard.digest import sha256_file
from exportguard.features.registry import FEATURE_NAMES
from exportguard.monitoring.reference import reference_distributions
from exportguard.scoring.bundle import load_bundle, write_bundle
from exportguard.scoring.scorer import Scorer
from exportguard.serving.snapshot import load_snapshot

from factories import make_feature_table

AS_OF = "2026-10-01"


def _table(tmp_path: Path, n: int = 600, seed: int = 11, bad: int = 3) -> tuple[Path, pd.DataFrame]:
    frame = make_feature_table(n, seed=seed)
    for i in range(bad):
        frame.loc[10 * i + 1, "restricted_traffic_share_30d"] = np.inf
    path = tmp_path / f"features-{seed}.parquet"
    frame.to_parquet(path, row_group_size=128, index=False)
    return path, frame


def _cli(path: Path, out: Path, model: Path, *extra: str) -> int:
    return main(
        [
            "batch",
            "--features",
            str(path),
            "--out",
            str(out),
            "--model",
            str(model),
            "--as-of",
            AS_OF,
            "--chunk-rows",
            "150",
            "--no-snapshot",
            *extra,
        ]
    )


def test_every_account_once_and_parity_with_the_scorer(tiny_bundle, tmp_path):
    path, frame = _table(tmp_path)
    assert _cli(path, tmp_path / "out", tiny_bundle, "--contributions") == 0
    out = read_batch_output(tmp_path / "out")
    quarantined = read_batch_output(tmp_path / "out", quarantine=True)
    assert len(out) + len(quarantined) == len(frame)
    assert out["account_id"].is_unique
    assert quarantined["input_row"].tolist() == [1, 11, 21]
    assert set(quarantined["quarantine_reason"]) == {"non-finite restricted_traffic_share_30d=inf"}
    good = frame.drop(index=[1, 11, 21]).reset_index(drop=True)
    assert out["account_id"].tolist() == good["account_id"].tolist()  # input order is kept
    scorer = Scorer.from_path(tiny_bundle)
    direct = scorer.score(good)
    np.testing.assert_array_equal(out["score"].to_numpy(), direct.prob)
    np.testing.assert_array_equal(out["raw_score"].to_numpy(), direct.raw)
    assert out["band"].tolist() == direct.band.tolist()
    contrib = out[[f"contrib_{n}" for n in FEATURE_NAMES]].to_numpy()
    np.testing.assert_allclose(contrib, direct.contributions, atol=1e-9)
    np.testing.assert_allclose(out["base_value"], direct.base_value, atol=1e-9)
    top = direct.reasons(int(np.argmax(direct.raw)), k=5)
    row = out.iloc[int(np.argmax(direct.raw))]
    assert [row[f"reason_{i + 1}_sentence"] for i in range(len(top))] == [r.sentence for r in top]
    bundle = load_bundle(tiny_bundle)
    assert set(out["model_sha256"]) == {bundle.sha256}
    assert set(out["as_of"]) == {pd.Timestamp(AS_OF)}
    manifest = json.loads(next((tmp_path / "out" / "runs").glob("*/manifest.json")).read_text())
    assert manifest["counts"] == {"input": 600, "scored": 597, "quarantined": 3}
    assert manifest["input"]["fingerprint_sha256"] == sha256_file(path)
    assert manifest["model"]["sha256"] == bundle.sha256
    assert sum(p["rows"] for p in manifest["parts"]) == 597 and len(manifest["parts"]) == 4


def test_resume_skips_finished_chunks_and_rerun_is_idempotent(tiny_bundle, tmp_path, monkeypatch):
    path, frame = _table(tmp_path, bad=0)
    config = BatchConfig(out=tmp_path / "out", model=tiny_bundle, chunk_rows=100)
    real = batch_rows.process_chunk
    calls: list[int] = []

    def failing(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt  # stands in for a crash after three chunks
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("exportguard.batch.run.process_chunk", failing)
    with pytest.raises(KeyboardInterrupt):
        run_batch(path, config, pd.Timestamp(AS_OF))
    assert not (tmp_path / "out" / "runs").exists()
    counted: list[int] = []

    def counting(*args, **kwargs):
        counted.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("exportguard.batch.run.process_chunk", counting)
    manifest = run_batch(path, config, pd.Timestamp(AS_OF))
    assert len(counted) == 3  # six chunks, three already finished
    out = read_batch_output(tmp_path / "out")
    assert sorted(out["account_id"]) == sorted(frame["account_id"])
    again = run_batch(path, config, pd.Timestamp(AS_OF))
    assert len(counted) == 3 and again["run_id"] == manifest["run_id"]


def test_too_many_quarantined_rows_fail_before_commit(tiny_bundle, tmp_path, capsys):
    path, _ = _table(tmp_path, n=300, bad=9)  # 3%
    assert _cli(path, tmp_path / "out", tiny_bundle) == 2
    err = capsys.readouterr().err
    assert "9 of 300 rows (3.00%) could not be scored" in err
    assert "non-finite restricted_traffic_share_30d: 9" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "runs").exists()
    assert _cli(path, tmp_path / "out", tiny_bundle, "--max-quarantine-share", "0.05") == 0
    assert len(read_batch_output(tmp_path / "out", quarantine=True)) == 9


def test_duplicate_and_null_ids_are_quarantined(tiny_bundle, tmp_path):
    frame = make_feature_table(200, seed=4)
    frame.loc[150, "account_id"] = frame.loc[3, "account_id"]
    frame.loc[7, "account_id"] = None
    path = tmp_path / "f.parquet"
    frame.to_parquet(path, row_group_size=64)
    assert _cli(path, tmp_path / "out", tiny_bundle, "--max-quarantine-share", "0.05") == 0
    q = read_batch_output(tmp_path / "out", quarantine=True)
    assert dict(zip(q["input_row"], q["quarantine_reason"], strict=True)) == {
        3: "duplicate account_id",
        7: "null account_id",
        150: "duplicate account_id",
    }
    assert len(read_batch_output(tmp_path / "out")) == 197


@pytest.fixture()
def bundle_with_reference(tiny_bundle, tmp_path) -> Path:
    """The tiny bundle re-exported with a training reference from its own population."""
    b = load_bundle(tiny_bundle)
    frame = make_feature_table(2000, seed=0)
    score = Scorer(b).score(frame, explain=False).prob
    return write_bundle(
        tmp_path / "ref_bundle",
        model_text=b.model_text,
        calibration=b.calibration,
        bands=b.bands,
        features=list(b.features),
        reference=reference_distributions(frame, score, pd.Timestamp("2026-09-01")),
        metadata={"model_name": "exportguard-test", "model_version": "2"},
        policy=b.policy,
    )


@pytest.mark.slow
def test_summary_reports_drift_top_accounts_and_band_rises(bundle_with_reference, tmp_path):
    first, frame = _table(tmp_path, n=500, seed=0, bad=0)
    assert _cli(first, tmp_path / "out", bundle_with_reference) == 0
    shifted = frame.copy()
    shifted["restricted_traffic_share_30d"] = 0.95  # every account now looks risky here
    shifted["restricted_ownership_effective"] = 0.9
    second = tmp_path / "shifted.parquet"
    shifted.to_parquet(second, row_group_size=128)
    assert (
        main(
            [
                "batch",
                "--features",
                str(second),
                "--out",
                str(tmp_path / "out"),
                "--model",
                str(bundle_with_reference),
                "--as-of",
                "2026-10-08",
                "--no-snapshot",
            ]
        )
        == 0
    )
    run = max(
        (tmp_path / "out" / "runs").glob("*/manifest.json"),
        key=lambda p: json.loads(p.read_text())["committed_at"],
    ).parent
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counts"] == {"input": 500, "scored": 500, "quarantined": 0}
    assert sum(summary["bands"].values()) == 500
    drift = summary["drift"]
    assert (
        drift["available"] and drift["features"]["restricted_traffic_share_30d"]["level"] == "alert"
    )
    assert drift["features"]["api_keys_30d"]["level"] == "ok"  # unchanged feature
    assert drift["score"]["level"] == "alert"
    top = summary["top_accounts"]
    assert len(top) == 25 and top[0]["score"] >= top[-1]["score"] and top[0]["reasons"]
    changes = summary["band_changes"]
    assert changes["compared"] == 500 and changes["rose"] > 0 and changes["new_accounts"] == 0
    risen = changes["accounts"][0]
    assert ["low", "review", "high"].index(risen["band"]) > ["low", "review", "high"].index(
        risen["band_previous"]
    )
    page = (run / "summary.html").read_text()
    assert "Band changes since the previous run" in page and "plots/psi.png" in page
    for png in ("plots/score.png", "plots/psi.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["reports"]["summary.json"] == sha256_file(run / "summary.json")


def test_without_reference_drift_is_reported_unavailable(tiny_bundle, tmp_path):
    path, _ = _table(tmp_path, n=200, bad=0)
    assert _cli(path, tmp_path / "out", tiny_bundle) == 0
    summary = json.loads(next((tmp_path / "out" / "runs").glob("*/summary.json")).read_text())
    assert summary["drift"]["available"] is False and summary["band_changes"] is None


def test_run_writes_the_online_feature_snapshot(tiny_bundle, tmp_path):
    path, frame = _table(tmp_path, n=300, bad=1)
    store = tmp_path / "store"
    rc = main(
        [
            "batch",
            "--features",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--model",
            str(tiny_bundle),
            "--as-of",
            AS_OF,
            "--feature-store",
            str(store),
        ]
    )
    assert rc == 0
    snap = load_snapshot(store)
    assert len(snap) == 299 and frame.loc[1, "account_id"] not in snap.frame.index
    assert snap.as_of == pd.Timestamp(AS_OF) and "batch run" in snap.source


def test_as_of_is_taken_from_the_table_and_must_agree(tiny_bundle, tmp_path, capsys):
    frame = make_feature_table(50, seed=2).assign(as_of=pd.Timestamp("2026-09-15"))
    path = tmp_path / "f.parquet"
    frame.to_parquet(path)
    base = [
        "batch",
        "--features",
        str(path),
        "--out",
        str(tmp_path / "out"),
        "--model",
        str(tiny_bundle),
        "--no-snapshot",
    ]
    assert main(base) == 0
    assert set(read_batch_output(tmp_path / "out")["as_of"]) == {pd.Timestamp("2026-09-15")}
    assert main([*base, "--as-of", "2026-10-01"]) == 2
    assert "differs from the as_of 2026-09-15" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda f: f.drop(columns=["api_keys_30d"]),
            "lacks 1 required column(s): ['api_keys_30d']",
        ),
        (lambda f: f.assign(api_keys_30d="many"), "not numeric: ['api_keys_30d ("),
        (lambda f: f.assign(account_id=range(len(f))), "account_id must hold strings"),
    ],
)
def test_bad_tables_get_a_clear_error(tiny_bundle, tmp_path, capsys, mutate, message):
    path = tmp_path / "f.parquet"
    mutate(make_feature_table(20, seed=1)).to_parquet(path)
    assert _cli(path, tmp_path / "out", tiny_bundle) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_inputs_and_models_are_named(tiny_bundle, tmp_path, capsys):
    not_parquet = tmp_path / "f.parquet"
    not_parquet.write_text("account_id,x\n")
    assert _cli(not_parquet, tmp_path / "out", tiny_bundle) == 2
    assert "not a readable Parquet file" in capsys.readouterr().err
    assert _cli(tmp_path / "absent.parquet", tmp_path / "out", tiny_bundle) == 2
    assert "does not exist" in capsys.readouterr().err
    path, _ = _table(tmp_path, n=20, bad=0)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "model.txt").write_text("tampered")
    assert _cli(path, tmp_path / "out", broken) == 2
    assert "model.txt: sha256" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["batch", "--features", str(path), "--out", str(tmp_path), "--chunk-rows", "0"])
    assert "must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_features_from_raw_data(tiny_bundle, tmp_path, capsys):
    from exportguard.synth.world import generate_world, write_world

    world = generate_world(120, seed=5, days=40)
    write_world(world, tmp_path / "data", tmp_path / "truth.parquet")
    store = tmp_path / "store"
    other = tmp_path / "params.yaml"
    other.write_text("policy:\n  restricted_countries: [CN]\n")
    refused = ["batch", "--data", str(tmp_path / "data"), "--as-of", AS_OF]
    refused += ["--out", str(tmp_path / "out"), "--model", str(tiny_bundle), "--params", str(other)]
    assert main(refused) == 2  # the features must be computed with the model's policy
    assert "['restricted_countries'] differ from the policy" in capsys.readouterr().err
    assert not (tmp_path / "out" / "_staging").exists()
    args = [
        "batch",
        "--data",
        str(tmp_path / "data"),
        "--as-of",
        AS_OF,
        "--out",
        str(tmp_path / "out"),
        "--model",
        str(tiny_bundle),
        "--feature-store",
        str(store),
    ]
    assert main(args) == 0
    out = read_batch_output(tmp_path / "out")
    accounts = pd.read_parquet(tmp_path / "data" / "accounts.parquet")
    created = pd.to_datetime(accounts["created_at"])
    if created.dt.tz is not None:
        created = created.dt.tz_convert("UTC").dt.tz_localize(None)
    expected = set(accounts.loc[created < pd.Timestamp(AS_OF), "account_id"])
    assert set(out["account_id"]) == expected and out["account_id"].is_unique
    assert len(load_snapshot(store)) == len(out)
    assert not list((tmp_path / "out" / "_staging").glob("features-*.parquet"))


def test_an_empty_table_commits_an_empty_run(tiny_bundle, tmp_path):
    path = tmp_path / "empty.parquet"
    make_feature_table(5, seed=1).iloc[:0].to_parquet(path)
    assert _cli(path, tmp_path / "out", tiny_bundle) == 0
    manifest = json.loads(next((tmp_path / "out" / "runs").glob("*/manifest.json")).read_text())
    assert manifest["counts"] == {"input": 0, "scored": 0, "quarantined": 0}
    assert len(read_batch_output(tmp_path / "out")) == 0


@pytest.mark.slow
def test_run_is_logged_to_mlflow_when_a_tracking_store_is_configured(
    tiny_bundle, tmp_path, monkeypatch
):
    import mlflow

    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the fast store; sqlite works the same
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    path, _ = _table(tmp_path, n=200, bad=1)
    assert _cli(path, tmp_path / "out", tiny_bundle) == 0
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["exportguard-batch"])
    assert len(runs) == 1
    assert (
        runs.loc[0, "metrics.count_scored"] == 199 and runs.loc[0, "metrics.count_quarantined"] == 1
    )
    run_id = next((tmp_path / "out" / "runs").iterdir()).name
    assert runs.loc[0, "tags.batch_run_id"] == run_id
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs.loc[0, "run_id"])}
    assert {"summary.json", "summary.html", "plots"} <= artifacts
