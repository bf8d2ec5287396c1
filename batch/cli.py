"""`exportguard batch`: rescore every account into OUT, atomically, with a drift report."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from exportguard.cliargs import int_in_range

log = logging.getLogger(__name__)


_positive_int = int_in_range(1)


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def _batch(args: argparse.Namespace) -> int:
    from exportguard.batch.run import BatchConfig, run_batch
    from exportguard.batch.snapshot import (
        features_from_data,
        model_policy,
        snapshot_from_run,
    )
    from exportguard.errors import ExportguardError
    from exportguard.features.contract import parse_as_of
    from exportguard.scoring.bundle import checked_bundle

    if args.features is None and args.data is None:
        raise ExportguardError("give either --features FILE or --data DIR (with --as-of T)")
    config = BatchConfig(
        out=args.out,
        model=args.model,
        engine=args.engine,
        chunk_rows=args.chunk_rows,
        top_k=args.top_k,
        contributions=args.contributions,
        max_quarantine_share=args.max_quarantine_share,
        n_jobs=args.threads or 0,
        spark_master=args.spark_master,
    )
    as_of = parse_as_of(args.as_of) if args.as_of else None
    bundle = checked_bundle(config.model)  # hashes and feature spec, before any work
    if args.data is not None:
        policy = model_policy(bundle, args.params)
        engine = "duckdb"
        if config.engine == "spark":
            from exportguard.batch.spark import spark_session

            spark_session(config.spark_master)  # the session the feature engine then uses
            engine = "spark"
        features, as_of, fingerprint = features_from_data(
            args.data, as_of, policy, args.out, config.chunk_rows, engine
        )
        manifest = run_batch(features, config, as_of, fingerprint, source=str(args.data))
    else:
        manifest = run_batch(args.features, config, as_of)
    run_dir = (
        Path(manifest["_dir"]) if "_dir" in manifest else args.out / "runs" / manifest["run_id"]
    )
    if not args.no_snapshot:
        store = args.feature_store
        if store is None:
            from exportguard.serving.snapshot import default_store

            store = default_store()
        snapshot_from_run(
            Path(manifest["input"]["path"]), run_dir, store, bundle.metadata["feature_spec"]
        )
    if args.data is not None:  # the cached feature table is only needed until here
        Path(manifest["input"]["path"]).unlink(missing_ok=True)
    c = manifest["counts"]
    print(
        f"run {manifest['run_id']} committed to {run_dir}: {c['scored']} scored, "
        f"{c['quarantined']} quarantined of {c['input']} rows; report {run_dir / 'summary.html'}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `batch` to the `exportguard` parser."""
    p = sub.add_parser(
        "batch",
        help="rescore every account (streaming, resumable, atomic) with reasons and a drift report",
        description="Score a feature table (--features FILE) or raw data (--data DIR --as-of T) with "
        "the exported champion into OUT/runs/<run id>/: Parquet parts with score, band, raw score and "
        "top reasons per account, a quarantine file for rows that cannot be scored, and a summary "
        "(JSON, HTML with plots) with PSI drift against the training reference. Nothing is visible "
        "until the manifest is written; rerunning the same arguments after a crash resumes.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--features", type=Path, metavar="FILE", help="Parquet feature table")
    src.add_argument("--data", type=Path, metavar="DIR", help="raw data directory (data contract)")
    p.add_argument(
        "--as-of",
        metavar="T",
        help="point in time (ISO 8601); with --data default the data horizon, with --features "
        "the table's as_of column",
    )
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="output directory")
    p.add_argument(
        "--model", type=Path, default=Path("models/champion"), metavar="PATH", help="model bundle"
    )
    p.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local (default): features (with --data) by DuckDB, scoring in this process; "
        "spark: features (with --data) and scoring (mapInPandas) in Spark",
    )
    p.add_argument(
        "--chunk-rows",
        type=_positive_int,
        default=50_000,
        metavar="N",
        help="rows per chunk (bounds memory; the unit of resumption)",
    )
    p.add_argument(
        "--top-k", type=_positive_int, default=5, metavar="K", help="reasons per account"
    )
    p.add_argument(
        "--contributions",
        action="store_true",
        help="also write every feature's contribution (contrib_<feature>, base_value)",
    )
    p.add_argument(
        "--max-quarantine-share",
        type=_share,
        default=0.01,
        metavar="X",
        help="fail before committing if more than this share of rows cannot be scored (default 0.01)",
    )
    snap = p.add_mutually_exclusive_group()
    snap.add_argument(
        "--feature-store",
        type=Path,
        metavar="PATH",
        help="write the feature snapshot for online lookups here "
        "(default $EXPORTGUARD_FEATURE_STORE or data/feature_store)",
    )
    snap.add_argument(
        "--no-snapshot", action="store_true", help="do not write the feature snapshot"
    )
    p.add_argument(
        "--params",
        type=Path,
        metavar="params.yaml",
        help="check that its policy section is the model's (--data uses the policy in the bundle)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help=f"threads for scoring (default all cores: {os.cpu_count()})",
    )
    p.add_argument(
        "--spark-master",
        metavar="URL",
        help="Spark master for --engine spark (default: spark-submit/SPARK_* config, else local[*])",
    )
    p.set_defaults(handler=_batch)
