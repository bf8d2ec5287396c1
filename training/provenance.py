"""Where a run came from: the code's git commit (the data's fingerprint is `digest.data_fingerprint`)."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)


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
