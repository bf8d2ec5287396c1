"""Benchmark: batch rescoring of 1M accounts, end to end, against the TreeSHAP floors.

Run by hand, never in CI:

    .venv/bin/python bench/batch.py                    # 1M rows, Spark on the 100k subset
    .venv/bin/python bench/batch.py --rows 200000 --small-rows 20000 --no-spark

What it does, all in one run on the same model and rows:

1. a feature table of N accounts (tests/factories.make_feature_table: plausible ranges,
   ~20% missing, a planted signal), written as Parquet with 50k-row row groups, plus its
   first 100k rows as a second table;
2. a model of 300 trees x 31 leaves trained on planted labels (tests/factories.build_bundle),
   re-exported with a training reference so the drift report is computed too;
3. the floor on a 20k-row slice of the same matrix: LightGBM `predict(pred_contrib=True)`
   (all cores), shap's TreeExplainer, and the Scorer (FastTreeSHAP v2, all cores), in rows/s;
   exactness of the Scorer's contributions against `pred_contrib` on a 2k-row sample;
4. `exportguard batch --features ... --no-snapshot` (local engine, reasons, drift report,
   committed output) as a subprocess on 100k and on N rows: wall time including start-up,
   and peak RSS of the process (os.wait4);
5. `--engine spark` (local[*]) on the same 100k-row table, against the local engine's run of 4.

Targets (issue 5): local end to end >= 3x pred_contrib rows/s; peak RSS flat (N vs 100k);
Spark within 2x of the local engine. Results are printed and written to bench/out/batch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
AS_OF = "2026-10-01"


def write_table(frame: pd.DataFrame, path: Path, row_group: int = 50_000) -> Path:
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group
    )
    return path


def make_bundle(work: Path) -> Path:
    """300 rounds x 31 leaves on planted labels, re-exported with a training reference."""
    from exportguard.monitoring.reference import reference_distributions
    from exportguard.scoring.bundle import load_bundle, write_bundle
    from exportguard.scoring.scorer import Scorer

    from factories import build_bundle, make_feature_table

    raw = load_bundle(build_bundle(work / "plain", n=60_000, seed=1, rounds=300, num_leaves=31))
    ref_rows = make_feature_table(20_000, seed=99)
    prob = Scorer(raw).score(ref_rows, explain=False).prob
    return write_bundle(
        work / "bundle",
        model_text=raw.model_text,
        calibration=raw.calibration,
        bands=raw.bands,
        features=list(raw.features),
        reference=reference_distributions(ref_rows, prob, pd.Timestamp("2026-09-01")),
        metadata={"model_name": "exportguard-bench", "model_version": "bench"},
        policy=raw.policy,
    )


def floors(bundle: Path, frame: pd.DataFrame) -> dict[str, Any]:
    """rows/s of pred_contrib, shap.TreeExplainer and the Scorer on the same 20k rows."""
    import lightgbm as lgb
    import shap

    from exportguard.features.matrix import model_matrix
    from exportguard.scoring.scorer import Scorer

    scorer = Scorer.from_path(bundle, n_jobs=os.cpu_count() or 1)
    booster = lgb.Booster(model_str=scorer.bundle.model_text)
    X = model_matrix(frame)
    t = time.perf_counter()
    ref = booster.predict(X, pred_contrib=True)
    t_lgb = time.perf_counter() - t
    explainer = shap.TreeExplainer(booster)
    t = time.perf_counter()
    explainer.shap_values(X, check_additivity=False)
    t_shap = time.perf_counter() - t
    scorer.contributions(X[:3000])  # warm the explainer (one-off precomputation)
    t = time.perf_counter()
    batch = scorer.score(frame)
    t_scorer = time.perf_counter() - t
    sample = np.random.RandomState(0).choice(len(frame), 2000, replace=False)
    err = float(np.max(np.abs(batch.contributions[sample] - ref[sample, :-1])))
    err_base = abs(batch.base_value - float(ref[0, -1]))
    dump = booster.dump_model()["tree_info"]
    return {
        "slice_rows": len(frame),
        "trees": len(dump),
        "mean_leaves": float(np.mean([t["num_leaves"] for t in dump])),
        "lgb_pred_contrib_rows_s": len(frame) / t_lgb,
        "shap_tree_explainer_rows_s": len(frame) / t_shap,
        "scorer_rows_s": len(frame) / t_scorer,
        "max_abs_diff_vs_pred_contrib": err,
        "base_value_diff": err_base,
    }


#: A tiny parent for the measured run: a child's ru_maxrss starts from its parent's RSS at
#: fork, so forking straight from this (large) process would report this process's memory.
_WRAPPER = (
    "import resource, subprocess, sys; "
    "rc = subprocess.call(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(rc)"
)


def run_cli(args: list[str], log: Path) -> dict[str, Any]:
    """Run `exportguard batch` as a grandchild; wall seconds and its peak RSS (MiB)."""
    cmd = [sys.executable, "-c", _WRAPPER, sys.executable, "-m", "exportguard.cli", "batch", *args]
    t = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    fh_text = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"batch run failed, see {log}:\n{fh_text[-2000:]}{proc.stderr[-2000:]}")
    lines = proc.stderr.strip().splitlines()
    with open(log, "a") as fh:
        fh.write(proc.stderr)
    return {"wall_s": wall, "peak_rss_mib": int(lines[-1]) / 1024.0}


def committed_rows(out: Path) -> int:
    from exportguard.batch.store import committed_runs

    return int(committed_runs(out)[-1]["counts"]["scored"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=100_000)
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--work", type=Path, help="working directory (default: a temp dir)")
    opts = parser.parse_args()
    from exportguard.telemetry import disable_telemetry

    from factories import make_feature_table

    disable_telemetry()
    work = opts.work or Path(tempfile.mkdtemp(prefix="exportguard-bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work dir {work}; {os.cpu_count()} cores")
    t = time.perf_counter()
    bundle = make_bundle(work)
    print(f"model trained and exported in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    frame = make_feature_table(opts.rows, seed=5)
    big = write_table(frame, work / "features_big.parquet")
    small = write_table(frame.iloc[: opts.small_rows], work / "features_small.parquet")
    floor = floors(bundle, frame.iloc[:20_000].reset_index(drop=True))
    del frame
    print(f"tables written in {time.perf_counter() - t:.1f}s; floor: {json.dumps(floor, indent=1)}")
    results: dict[str, Any] = {"cores": os.cpu_count(), "rows": opts.rows, "floor": floor}
    common = ["--model", str(bundle), "--as-of", AS_OF, "--no-snapshot"]
    for name, path, n in (("local_small", small, opts.small_rows), ("local_big", big, opts.rows)):
        r = run_cli(
            ["--features", str(path), "--out", str(work / name), *common], work / f"{name}.log"
        )
        assert committed_rows(work / name) == n
        r["rows_s"] = n / r["wall_s"]
        results[name] = r
        print(
            f"{name}: {n} rows in {r['wall_s']:.1f}s = {r['rows_s']:.0f} rows/s, peak RSS {r['peak_rss_mib']:.0f} MiB"
        )
    if not opts.no_spark:
        name = "spark_small"
        r = run_cli(
            ["--features", str(small), "--out", str(work / name), "--engine", "spark", *common],
            work / f"{name}.log",
        )
        assert committed_rows(work / name) == opts.small_rows
        r["rows_s"] = opts.small_rows / r["wall_s"]
        results[name] = r
        print(f"{name}: {opts.small_rows} rows in {r['wall_s']:.1f}s = {r['rows_s']:.0f} rows/s")
    lgb_rate = floor["lgb_pred_contrib_rows_s"]
    ratios = {
        "local_e2e_vs_pred_contrib": results["local_big"]["rows_s"] / lgb_rate,
        "scorer_vs_pred_contrib": floor["scorer_rows_s"] / lgb_rate,
        "shap_vs_pred_contrib": floor["shap_tree_explainer_rows_s"] / lgb_rate,
        "rss_big_over_small": results["local_big"]["peak_rss_mib"]
        / results["local_small"]["peak_rss_mib"],
    }
    if not opts.no_spark:
        ratios["spark_wall_over_local_wall"] = (
            results["spark_small"]["wall_s"] / results["local_small"]["wall_s"]
        )
    results["ratios"] = ratios
    print(json.dumps(ratios, indent=1))
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / 'batch.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
