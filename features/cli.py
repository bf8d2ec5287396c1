"""Subcommands of the feature stage: `validate` and `features`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)

#: as features.compute.ENGINES (not imported here: `--help` stays fast)
ENGINES = ("duckdb", "spark")


def _validate(args: argparse.Namespace) -> int:
    from exportguard.features.contract import parse_as_of, scan_tables

    horizon = parse_as_of(args.horizon) if args.horizon else None
    _, report = scan_tables(args.data, horizon=horizon)
    print(f"{args.data}: valid under data contract v1")
    print(report.render())
    return 0


def _features(args: argparse.Namespace) -> int:
    from exportguard.errors import ExportguardError
    from exportguard.features.compute import account_features
    from exportguard.features.contract import parse_as_of, scan_tables

    if args.out.suffix != ".parquet":
        raise ExportguardError(f"--out {args.out} must end in .parquet")
    from exportguard.features.policy import load_policy_file

    policy = load_policy_file(args.params)
    tables, report = scan_tables(args.data)
    as_of = parse_as_of(args.as_of) if args.as_of else report.horizon
    if as_of is None:
        raise ExportguardError(
            "no --as-of given and the data has no activity to infer a horizon from"
        )
    if args.engine == "spark":
        from exportguard.batch.spark import spark_session

        spark_session(args.spark_master)  # the session account_features then uses
    elif args.spark_master:
        raise ExportguardError("--spark-master needs --engine spark")
    frame = account_features(tables, as_of, policy, engine=args.engine)
    excluded = len(tables.accounts) - len(frame)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".parquet.tmp")
    # timestamps in microseconds: Spark (`batch --engine spark`) cannot read nanoseconds
    frame.assign(as_of=as_of).to_parquet(tmp, index=False, coerce_timestamps="us")
    tmp.replace(args.out)
    log.info(
        "wrote %d accounts x %d features as of %s to %s (%d accounts created at or after %s not included)",
        len(frame),
        frame.shape[1] - 1,
        as_of,
        args.out,
        excluded,
        as_of,
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `validate` and `features` to the `exportguard` parser."""
    p = sub.add_parser(
        "validate",
        help="check a data directory against the raw-data contract",
        description="Check every table of the data contract (Parquet or CSV) in DIR: columns, types, "
        "ids, enumerations, country codes, ranges, timestamps, foreign keys (the activity tables in chunks, out of core). Prints one report "
        "and exits 2 on any problem.",
    )
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="data directory")
    p.add_argument(
        "--horizon",
        metavar="T",
        help="declare the latest allowed time: rows after it (+1 day) are errors "
        "(default: derived from the bulk of api_usage; later rows elsewhere are reported)",
    )
    p.set_defaults(handler=_validate)

    p = sub.add_parser(
        "features",
        help="compute point-in-time account features",
        description="Validate DIR, then write one row per account created before T with the declared "
        "feature list, computed only from rows dated before T. The activity tables (payments, "
        "api_usage, logins) are validated in chunks and copied to a temporary directory under "
        "EXPORTGUARD_SCAN_DIR, which the engine scans: memory does not hold them whole.",
    )
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="data directory")
    p.add_argument(
        "--as-of", metavar="T", help="point in time (ISO 8601; default: the data horizon)"
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="FILE.parquet", help="output Parquet file"
    )
    p.add_argument(
        "--params",
        type=Path,
        metavar="params.yaml",
        help="read the `policy` section from this file",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="duckdb",
        help="duckdb (default): the feature queries (84 of 88 features, the graph's links) "
        "in embedded DuckDB; spark: the same queries in Spark; either way effective "
        "ownership, name screening and the graph's components run on numpy beside them",
    )
    p.add_argument(
        "--spark-master",
        metavar="URL",
        help="Spark master for --engine spark (default: spark-submit/SPARK_* config, else "
        "local[*])",
    )
    p.set_defaults(handler=_features)
