"""Subcommands of the `synth` stage: `exportguard generate`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from exportguard.errors import ExportguardError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `exportguard` parser."""
    p = sub.add_parser(
        "generate",
        help="write a realistic synthetic world (every contract table) and its hidden truth",
        description=(
            "Generate a synthetic world of API accounts: circumvention typologies (resellers, "
            "shell companies, proxy access, exemption abuse), their innocent twins, careful "
            "evaders, noisy partial labels. Writes every table of the data contract into DIR "
            "and the ground truth (account_id, is_circumvention, typology, archetype) outside it."
        ),
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="data directory to write")
    p.add_argument("--accounts", required=True, type=int, metavar="N", help="number of accounts")
    p.add_argument(
        "--seed", required=True, type=int, metavar="S", help="random seed (same seed, same world)"
    )
    p.add_argument(
        "--days",
        type=int,
        default=180,
        metavar="D",
        help="length of the activity timeline in days (default 180)",
    )
    p.add_argument(
        "--end",
        default="2026-10-01",
        metavar="DATE",
        help="end of the timeline, UTC (default 2026-10-01)",
    )
    p.add_argument(
        "--scenario",
        choices=("default", "hard"),
        default="default",
        help=(
            "default: the standard world; hard: evasion spreads to most new circumventers, each "
            "evasive habit adopted on its own, innocent accounts share every single tell, "
            "reviewers miss careful evaders more often, confirmed accounts go quiet "
            "(default: default)"
        ),
    )
    p.add_argument(
        "--truth",
        type=Path,
        metavar="PATH",
        help="where to write the truth (default DIR/../<DIRNAME>_truth.parquet; never inside DIR)",
    )
    p.add_argument(
        "--format",
        choices=("parquet", "csv"),
        default="parquet",
        help="table file format (default parquet)",
    )
    p.set_defaults(handler=_generate)  # fmt: skip


def default_truth_path(out: Path) -> Path:
    """The truth sits next to the data directory, never inside it."""
    out = Path(out).resolve()
    return out.parent / f"{out.name}_truth.parquet"


def _generate(args: argparse.Namespace) -> int:
    from exportguard.synth.world import generate_world, write_world

    if args.accounts < 1:
        raise ExportguardError(f"--accounts must be at least 1, got {args.accounts}")
    if args.days < 7:
        raise ExportguardError(f"--days must be at least 7 (one week of activity), got {args.days}")
    if args.out.exists() and not args.out.is_dir():
        raise ExportguardError(f"--out {args.out} exists and is not a directory")
    truth = args.truth if args.truth is not None else default_truth_path(args.out)
    if truth.resolve().is_relative_to(args.out.resolve()):
        raise ExportguardError(
            f"--truth {truth} is inside the data directory {args.out}: the truth must live outside "
            "it, or a model reading the directory would see the answers"
        )
    if truth.exists() and truth.is_dir():
        raise ExportguardError(f"--truth {truth} is a directory; give a file path")
    world = generate_world(
        args.accounts, args.seed, days=args.days, end=args.end, scenario=args.scenario
    )
    write_world(world, args.out, truth, fmt=args.format)
    rows = ", ".join(f"{k}={len(v)}" for k, v in world.tables.items())
    labels = world.tables["labels"]
    log.info(
        "generated %s (%s scenario): %s; positives=%d; labelled=%d (%d confirmed); truth -> %s",
        args.out, args.scenario, rows, int(world.truth["is_circumvention"].sum()), len(labels),
        int(labels["label"].sum()), truth,
    )  # fmt: skip
    return 0
