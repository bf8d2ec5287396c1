"""The `exportguard` command: parses arguments, configures logging, runs one subcommand.

Each stage registers its own subcommands (`register(subparsers)` in its `cli` module) and
imports its heavy libraries only inside the handler, so `--help` stays fast. Errors
caused by input (ExportguardError, and ValueError from validation) are printed as one
clear message without a traceback and exit with status 2; so does a command run without
the optional dependencies it needs (it names the extra to install).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from exportguard.errors import ExportguardError
from exportguard.telemetry import disable_telemetry

COMMAND_MODULES = (
    "exportguard.synth.cli",
    "exportguard.features.cli",
    "exportguard.training.cli",
    "exportguard.serving.cli",
    "exportguard.batch.cli",
    "exportguard.review.cli",
)

log = logging.getLogger("exportguard")

#: optional libraries and the extra that installs them (pyproject.toml)
EXTRA_OF = {
    "pandera": "features",
    "rapidfuzz": "features",
    "tqdm": "batch",
    "matplotlib": "batch",
    "mlflow": "training",
    "dvc": "training",
    "sklearn": "training",
    "pyspark": "spark",
    "sqlalchemy": "review",
    "alembic": "review",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exportguard",
        description=(
            "Find API accounts that circumvent export controls: generate a synthetic world, "
            "validate raw data, compute point-in-time features, train, promote, serve and rescore."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    disable_telemetry()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # Alembic lists its plugins at INFO when its modules are imported
        logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return int(args.handler(args) or 0)
    except ExportguardError as exc:
        print(f"exportguard {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"exportguard {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in EXTRA_OF:
            raise
        print(
            f"exportguard {args.command}: error: this command needs {missing}, which this "
            f"installation lacks: install the `{EXTRA_OF[missing]}` extra "
            f"(pip install 'exportguard[{EXTRA_OF[missing]}]')",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"exportguard {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
