"""Benchmark: batch rescoring end to end against the TreeSHAP engines, on the shipped model.

Run by hand, never in CI (after `make demo`, which exports models/champion):

    .venv/bin/python bench/batch.py                    # champion + large model, 100k and 1M rows
    .venv/bin/python bench/batch.py --rows 200000 --no-large --no-spark

What it does, all in one run on the same rows:

1. a feature table of N accounts (tests/factories.make_feature_table: plausible ranges,
   ~20% missing, a planted signal), written as Parquet with 50k-row row groups, plus its
   first 100k rows as a second table;
2. the models: the shipped champion (`--model`, default models/champion: what `make demo`
   promotes) first, then a large test model of 300 trees x 31 leaves trained on planted
   labels (tests/factories.build_bundle; `--no-large` skips it), re-exported with a
   training reference so the drift report is computed too;
3. per model, the SHAP engines on a slice of the same matrix (`--floor-rows`, all cores):
   LightGBM `predict(pred_contrib=True)` (the floor every ratio is against), FastTreeSHAP
   v1 and v2 (the Scorer's engine), shap's TreeExplainer; each one's largest difference
   from `pred_contrib`;
4. per model, `exportguard batch --features ... --no-snapshot` (local engine, reasons,
   drift report, committed output) as a subprocess on 100k and on N rows: wall time
   including start-up, rows/s, and peak RSS of the process (os.wait4);
5. `--engine spark` (local[*]) on the 100k-row table with the champion.

Targets (issue 16): end to end >= 1.5x pred_contrib rows/s with the champion, >= 3x with
the large model; peak RSS flat from 100k to N rows. Results are printed and written to
bench/out/batch.json.
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
    """rows/s of each exact TreeSHAP engine on the same rows, and its gap to pred_contrib."""
    import warnings

    import lightgbm as lgb
    import shap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import fasttreeshap_fixed as fts

    from exportguard.features.matrix import model_matrix
    from exportguard.scoring.bundle import load_bundle

    cores = os.cpu_count() or 1
    b = load_bundle(bundle)
    booster = lgb.Booster(model_str=b.model_text)
    X = model_matrix(frame, b.feature_names)
    t = time.perf_counter()
    ref = booster.predict(X, pred_contrib=True, num_threads=cores)
    rates = {"lgb_pred_contrib": len(X) / (time.perf_counter() - t)}
    gaps = {"lgb_pred_contrib": 0.0}
    engines = {
        "fasttreeshap_v1": fts.TreeExplainer(booster, algorithm="v1", n_jobs=cores),
        "fasttreeshap_v2": fts.TreeExplainer(booster, algorithm="v2", n_jobs=cores),
        "shap_tree_explainer": shap.TreeExplainer(booster),
    }
    for name, explainer in engines.items():
        explainer.shap_values(X[:500], check_additivity=False)  # warm: one-off precomputation
        t = time.perf_counter()
        phi = np.asarray(explainer.shap_values(X, check_additivity=False), dtype=float)
        rates[name] = len(X) / (time.perf_counter() - t)
        phi = phi[-1] if phi.ndim == 3 else phi
        gaps[name] = float(np.max(np.abs(phi - ref[:, :-1])))
    dump = booster.dump_model()["tree_info"]
    return {
        "slice_rows": len(frame),
        "trees": len(dump),
        "mean_leaves": float(np.mean([t["num_leaves"] for t in dump])),
        "rows_s": rates,
        "max_abs_diff_vs_pred_contrib": gaps,
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


def run_model(
    name: str, bundle: Path, tables: list[tuple[str, Path, int]], floor_frame: pd.DataFrame,
    work: Path, spark: Path | None,
) -> dict[str, Any]:  # fmt: skip
    """The floors and the end-to-end runs of one model."""
    floor = floors(bundle, floor_frame)
    print(f"{name}: floors {json.dumps(floor, indent=1)}")
    out: dict[str, Any] = {"model": str(bundle), "floor": floor}
    common = ["--model", str(bundle), "--as-of", AS_OF, "--no-snapshot"]
    runs = [(f"local_{size}", path, n, []) for size, path, n in tables]
    if spark is not None:
        runs.append(("spark_small", spark, tables[0][2], ["--engine", "spark"]))
    for run, path, n, extra in runs:
        target = work / f"{name}_{run}"
        r = run_cli(
            ["--features", str(path), "--out", str(target), *extra, *common],
            work / f"{name}_{run}.log",
        )
        assert committed_rows(target) == n
        r["rows_s"] = n / r["wall_s"]
        r["vs_pred_contrib"] = r["rows_s"] / floor["rows_s"]["lgb_pred_contrib"]
        out[run] = r
        print(
            f"{name} {run}: {n} rows in {r['wall_s']:.1f}s = {r['rows_s']:.0f} rows/s "
            f"({r['vs_pred_contrib']:.2f}x pred_contrib), peak RSS {r['peak_rss_mib']:.0f} MiB"
        )  # fmt: skip
    out["rss_big_over_small"] = (
        out["local_big"]["peak_rss_mib"] / out["local_small"]["peak_rss_mib"]
    )
    if spark is not None:
        out["spark_wall_over_local_wall"] = (
            out["spark_small"]["wall_s"] / out["local_small"]["wall_s"]
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=100_000)
    parser.add_argument("--floor-rows", type=int, default=20_000)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "champion",
                        help="the shipped model (default models/champion, from `make demo`)")  # fmt: skip
    parser.add_argument("--no-large", action="store_true", help="skip the 300x31 test model")
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--work", type=Path, help="working directory (default: a temp dir)")
    opts = parser.parse_args()
    from exportguard.scoring.bundle import checked_bundle
    from exportguard.telemetry import disable_telemetry

    from factories import make_feature_table

    disable_telemetry()
    champion = checked_bundle(opts.model)  # refuses a missing or stale bundle clearly
    work = opts.work or Path(tempfile.mkdtemp(prefix="exportguard-bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work dir {work}; {os.cpu_count()} cores; champion {champion.name} v{champion.version}")
    frame = make_feature_table(opts.rows, seed=5)
    big = write_table(frame, work / "features_big.parquet")
    small = write_table(frame.iloc[: opts.small_rows], work / "features_small.parquet")
    floor_frame = frame.iloc[: opts.floor_rows].reset_index(drop=True)
    del frame
    tables = [("small", small, opts.small_rows), ("big", big, opts.rows)]
    results: dict[str, Any] = {"cores": os.cpu_count(), "rows": opts.rows}
    spark = None if opts.no_spark else small
    results["champion"] = run_model("champion", opts.model, tables, floor_frame, work, spark)
    if not opts.no_large:
        t = time.perf_counter()
        large = make_bundle(work)
        print(f"large model trained and exported in {time.perf_counter() - t:.1f}s")
        results["large"] = run_model("large", large, tables, floor_frame, work, None)
    summary = {
        name: {
            "e2e_big_vs_pred_contrib": r["local_big"]["vs_pred_contrib"],
            "e2e_small_vs_pred_contrib": r["local_small"]["vs_pred_contrib"],
            "rss_big_over_small": r["rss_big_over_small"],
            **{
                f"{e}_vs_pred_contrib": v / r["floor"]["rows_s"]["lgb_pred_contrib"]
                for e, v in r["floor"]["rows_s"].items()
            },
        }  # fmt: skip
        for name, r in results.items()
        if isinstance(r, dict)
    }
    results["summary"] = summary
    print(json.dumps(summary, indent=1))
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / 'batch.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
