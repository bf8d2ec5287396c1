"""The one digest helper: sha256 of a file, of a JSON value, and of a data directory.

Every recorded hash (bundle files and metadata sections, run ids, data fingerprints,
feature-cache keys, the feature spec) is computed here, so two places never disagree on
what "the same data" or "the same value" means.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from exportguard.errors import ExportguardError

#: the table files a data directory's fingerprint covers (the contract's two formats)
DATA_SUFFIXES = (".parquet", ".csv")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace: equal values give equal bytes (non-JSON types via str)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def json_digest(value: Any) -> str:
    """Hex sha256 of a value's canonical JSON."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


def lines_digest(lines: list[str]) -> str:
    """Hex sha256 over text lines, each ended by a newline (order as given)."""
    return hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()


def data_fingerprint(data_dir: Path) -> str:
    """sha256 over the sorted `relative/name:sha256` lines of every table file under a directory.

    Only table files count (.parquet, .csv), so a README or a validation report next to
    the tables does not change the fingerprint; for a flat directory the relative name is
    the file name.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ExportguardError(f"{data_dir}: not a directory of tables")
    files = sorted(p for p in data_dir.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES)
    if not files:
        raise ExportguardError(f"{data_dir}: no .parquet or .csv tables to fingerprint")
    return lines_digest([f"{p.relative_to(data_dir).as_posix()}:{sha256_file(p)}" for p in files])
