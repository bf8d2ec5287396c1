"""`--engine spark` (PySpark local mode) gives the local engine's results row for row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from exportguard.batch.run import BatchConfig, run_batch
from exportguard.batch.spark import bundle_bytes, scorer_from_bytes
from exportguard.batch.store import read_batch_output
from exportguard.features.registry import FEATURE_NAMES
from exportguard.scoring.bundle import BundleError, load_bundle

from factories import make_feature_table

pytest.importorskip("pyspark")


@pytest.mark.spark
@pytest.mark.slow
def test_spark_engine_equals_local_engine(tiny_bundle, tmp_path):
    frame = make_feature_table(5000, seed=9)
    frame.loc[17, "api_keys_30d"] = -1.0
    frame.loc[4000, "account_id"] = frame.loc[12, "account_id"]
    path = tmp_path / "features.parquet"
    frame.to_parquet(path, row_group_size=700)
    as_of = pd.Timestamp("2026-10-01")
    results = {}
    for engine in ("local", "spark"):
        config = BatchConfig(
            out=tmp_path / engine,
            model=tiny_bundle,
            engine=engine,
            chunk_rows=2500,
            contributions=True,
        )
        manifest = run_batch(path, config, as_of)
        assert manifest["counts"] == {"input": 5000, "scored": 4997, "quarantined": 3}
        out = read_batch_output(tmp_path / engine).sort_values("account_id").reset_index(drop=True)
        q = read_batch_output(tmp_path / engine, quarantine=True).sort_values("input_row")
        summary = json.loads(
            (tmp_path / engine / "runs" / manifest["run_id"] / "summary.json").read_text()
        )
        results[engine] = (out, q.reset_index(drop=True), summary)
    (lo, lq, ls), (so, sq, ss) = results["local"], results["spark"]
    contrib = [f"contrib_{n}" for n in FEATURE_NAMES] + ["base_value"]
    contrib += [c for c in lo.columns if c.endswith("_contribution")]
    exact = [c for c in lo.columns if c not in contrib and c != "run_id"]
    pd.testing.assert_frame_equal(lo[exact], so[exact])
    np.testing.assert_allclose(lo[contrib].to_numpy(), so[contrib].to_numpy(), atol=1e-9)
    pd.testing.assert_frame_equal(lq, sq)
    assert lq["input_row"].tolist() == [12, 17, 4000]
    assert ls["bands"] == ss["bands"] and ls["counts"] == ss["counts"]
    assert [a["account_id"] for a in ls["top_accounts"]] == [
        a["account_id"] for a in ss["top_accounts"]
    ]


def test_shipped_bundle_bytes_are_verified(tiny_bundle):
    files = bundle_bytes(tiny_bundle)
    expected = load_bundle(tiny_bundle).sha256
    assert scorer_from_bytes(files, expected).bundle.sha256 == expected
    tampered = {**files, "model.txt": files["model.txt"] + b"\n"}
    with pytest.raises(BundleError, match="does not match the driver's sha256"):
        scorer_from_bytes(tampered, expected)


@pytest.mark.spark
@pytest.mark.slow
def test_features_and_batch_from_raw_data_in_spark_equal_local(tiny_bundle, tmp_path):
    """`features --engine spark` and `batch --engine spark --data` compute the features in
    Spark and give what the local engine (DuckDB) gives."""
    from exportguard.cli import main
    from exportguard.synth.world import generate_world, write_world

    world = generate_world(150, seed=5, days=40)
    data = tmp_path / "data"
    write_world(world, data, tmp_path / "truth.parquet")
    as_of = "2026-10-01"
    tables = {}
    for engine in ("duckdb", "spark"):
        out = tmp_path / f"features-{engine}.parquet"
        args = ["features", "--data", str(data), "--as-of", as_of, "--out", str(out)]
        assert main([*args, "--engine", engine]) == 0
        tables[engine] = pd.read_parquet(out)
    local, spark = tables["duckdb"], tables["spark"]
    assert len(local) > 100 and list(local["account_id"]) == list(spark["account_id"])
    for name in FEATURE_NAMES:
        x, y = local[name].to_numpy(np.float64), spark[name].to_numpy(np.float64)
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        assert np.allclose(x, y, rtol=1e-9, atol=1e-12, equal_nan=True), name
    assert (local["restricted_traffic_share_all"] > 0).any()

    scored = {}
    for engine in ("local", "spark"):
        args = ["batch", "--data", str(data), "--as-of", as_of, "--out", str(tmp_path / engine)]
        args += ["--model", str(tiny_bundle), "--engine", engine, "--no-snapshot"]
        assert main(args) == 0
        out = read_batch_output(tmp_path / engine)
        scored[engine] = out.sort_values("account_id").reset_index(drop=True)
    lo, so = scored["local"], scored["spark"]
    assert list(lo["account_id"]) == list(so["account_id"]) and len(lo) == len(local)
    np.testing.assert_allclose(lo["score"].to_numpy(), so["score"].to_numpy(), atol=1e-9)
    assert (lo["band"] == so["band"]).all()
