"""Benchmark: the training command end to end on a generated world, against both baselines.

Run by hand, never in CI:

    .venv/bin/python bench/train.py --accounts 100000
    .venv/bin/python bench/train.py --accounts 20000 --compare    # also without presumed negatives

A world is generated (timed apart: not part of training) into --workdir, and reused by
later runs unless --fresh. Then, in this
process and timed phase by phase, exactly what `exportguard train --truth` does:

* features - read + validate the tables, features of every example at its own label time
             and of the whole population at the as-of time (one vectorised pass each);
* train    - the time folds, LightGBM, both baselines, calibration, bands, evaluation;
* track    - MLflow logging (plots, bundle, model) into a store inside --workdir.

Reported: wall time per phase and in total, peak RSS, and on the accounts never reviewed
before the as-of time, against the ground truth: AP, recall@k (k = weekly review capacity)
and recall@1% for the model, the logistic regression and the red-flag count, side by side.
With --compare the training is repeated on the same features with presumed negatives
switched off (and with class weighting 'balanced') to show their effect.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from exportguard.telemetry import disable_telemetry


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    """CPU seconds of this process (user + system), all threads: robust to a busy machine."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _row(name: str, m: dict[str, Any]) -> str:
    return (
        f"  {name:16s} {m['ap']:8.3f} {m['roc_auc']:8.3f} {m['recall_at_k']:8.3f} "
        f"{m['recall_at_top_fraction']:8.3f} {m['precision_at_top_fraction']:8.3f}"
    )


def _figures(title: str, metrics: dict[str, Any]) -> list[str]:
    truth = metrics["truth"]
    first = truth["model"]
    lines = [
        f"{title}: never-reviewed accounts n={first['n']:,}, circumventers={first['positives']}, "
        f"k={first['k']}, 1%={first['k_top_fraction']}",
        f"  {'':16s} {'AP':>8s} {'ROC AUC':>8s} {'R@k':>8s} {'R@1%':>8s} {'P@1%':>8s}",
    ]
    names = {"model": "LightGBM", "logistic": "logistic regr.", "red_flags": "red-flag count"}
    lines += [_row(names[s], truth[s]) for s in ("model", "logistic", "red_flags")]
    test = metrics["test"]
    lines.append(
        "  test labels AP: "
        + ", ".join(f"{names[s]} {test[s]['ap']:.3f}" for s in ("model", "logistic", "red_flags"))
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    disable_telemetry()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--workdir", type=Path, default=Path("bench/out/train"))
    ap.add_argument("--compare", action="store_true", help="also train without presumed negatives")
    ap.add_argument("--no-track", action="store_true", help="skip MLflow logging")
    ap.add_argument(
        "--fresh", action="store_true", help="regenerate the world even if --workdir has it"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from exportguard.synth.world import generate_world, write_world
    from exportguard.training.config import load_params, parse_params
    from exportguard.training.inputs import build_feature_set, read_truth
    from exportguard.training.pipeline import run_training

    params = load_params(args.params)
    work = args.workdir.resolve()
    world = work / f"world_{args.accounts}_{args.seed}"
    truth_path = work / f"world_{args.accounts}_{args.seed}_truth.parquet"
    if args.fresh or not (world / "accounts.parquet").exists() or not truth_path.exists():
        t = time.perf_counter()
        write_world(generate_world(args.accounts, args.seed, days=args.days), world, truth_path)
        print(
            f"generated {args.accounts:,} accounts in {time.perf_counter() - t:.1f} s (not timed)"
        )
    import pyarrow.parquet as pq

    usage_rows = pq.ParquetFile(world / "api_usage.parquet").metadata.num_rows
    label_rows = pq.ParquetFile(world / "labels.parquet").metadata.num_rows

    phases: dict[str, float] = {}
    cpu: dict[str, float] = {}
    t0, c0 = time.perf_counter(), _cpu_s()
    truth = read_truth(truth_path)
    fs = build_feature_set(world, params)
    phases["features"], cpu["features"] = time.perf_counter() - t0, _cpu_s() - c0
    t, c = time.perf_counter(), _cpu_s()
    result = run_training(fs.examples, fs.population, fs.as_of, params, truth)
    phases["train+evaluate"], cpu["train+evaluate"] = time.perf_counter() - t, _cpu_s() - c
    if not args.no_track:
        from exportguard.training.tracking import log_run

        t, c = time.perf_counter(), _cpu_s()
        meta = {"model_name": params.registry.model_name, "model_version": "bench"}
        tags = {"data_fingerprint": fs.fingerprint, "bench": "train"}
        log_run(result, params, meta, project_dir=work, tags=tags, register=False)
        phases["mlflow"], cpu["mlflow"] = time.perf_counter() - t, _cpu_s() - c
    total, total_cpu = time.perf_counter() - t0, _cpu_s() - c0
    load = os.getloadavg()[0]

    print(
        f"\nworld: {args.accounts:,} accounts, {usage_rows:,} api_usage rows, {label_rows:,} labels; "
        f"{len(fs.examples):,} examples ({int((fs.examples['kind'] == 'label').sum()):,} labelled), "
        f"{len(fs.population):,} population rows"
    )
    print(
        "train command end to end (wall): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
        + f"; total {total:.1f} s; peak RSS {_peak_rss_mb():,.0f} MB"
    )
    print(
        "CPU time (user+sys): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in cpu.items())
        + f"; total {total_cpu:.1f} s (1-min load average at the end: {load:.1f} on "
        f"{os.cpu_count()} cores)"
    )
    print()
    print("\n".join(_figures("params.yaml as is", result.metrics)))
    report: dict[str, Any] = {
        "accounts": args.accounts,
        "api_usage_rows": usage_rows,
        "phases_s": phases,
        "total_s": total,
        "cpu_s": cpu,
        "total_cpu_s": total_cpu,
        "load_average_1m": load,
        "peak_rss_mb": _peak_rss_mb(),
        "default": {"truth": result.metrics["truth"], "test": result.metrics["test"]},
    }
    if args.compare:
        base = params.model_dump(mode="json")
        variants = {
            "presumed negatives off": {"examples": {"unreviewed": {"enabled": False}}},
            "class_weight balanced": {"train": {"class_weight": "balanced"}},
        }
        for name, change in variants.items():
            merged = json.loads(json.dumps(base))
            for section, values in change.items():
                for key, value in values.items():
                    if isinstance(value, dict):
                        merged[section][key].update(value)
                    else:
                        merged[section][key] = value
            other = run_training(fs.examples, fs.population, fs.as_of, parse_params(merged), truth)
            print()
            print("\n".join(_figures(name, other.metrics)))
            report[name] = {"truth": other.metrics["truth"], "test": other.metrics["test"]}
    out = work / f"train_bench_{args.accounts}.json"
    out.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
