"""Where a run came from: a fingerprint of the input tables and the code's git commit."""

from __future__ import annotations

import hashlib
import logging
import subprocess
from pathlib import Path

from exportguard.bundle import sha256_file
from exportguard.errors import ExportguardError

log = logging.getLogger(__name__)

DATA_SUFFIXES = (".parquet", ".csv")


def data_fingerprint(data_dir: Path) -> str:
    """sha256 over the sorted `name:sha256` lines of every table file in the data directory."""
    data_dir = Path(data_dir)
    files = sorted(p for p in data_dir.iterdir() if p.is_file() and p.suffix in DATA_SUFFIXES)
    if not files:
        raise ExportguardError(f"{data_dir}: no .parquet or .csv tables to fingerprint")
    text = "".join(f"{p.name}:{sha256_file(p)}\n" for p in files)
    return hashlib.sha256(text.encode()).hexdigest()


def git_commit(project_dir: Path) -> str:
    """HEAD commit of the project's git checkout (suffixed '-dirty' with local changes), or 'unknown'."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        log.debug("no git checkout at %s", project_dir)
        return "unknown"
    return f"{head}-dirty" if dirty else head
