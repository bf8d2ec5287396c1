"""Atomic file writes and verified artifacts: one way every artifact reaches the disk.

A reader sees the old file or the whole new one, never half of it. An artifact (model
bundle, feature snapshot, training set; batch runs use the same primitives per chunk) is
its files, written first, and a manifest holding each file's sha256, written last; loading
verifies every hash before anything is parsed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from exportguard.digest import sha256_file
from exportguard.errors import ExportguardError


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through a temp file in the same directory, fsync, then os.replace (mode 0644)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the file from other readers
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write` for a UTF-8 text."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


# --- verified artifacts: files first, the manifest with their sha256 last, verified on load ---

Writer = Callable[[BinaryIO], object]


class ArtifactError(ExportguardError, ValueError):
    """An artifact directory is incomplete, or a file changed after its manifest was written."""


def write_files(out_dir: Path, files: Mapping[str, Writer]) -> dict[str, str]:
    """Write each file atomically into `out_dir`; returns {name: sha256} (the manifest's part)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for name, write in files.items():
        atomic_write(out_dir / name, write)
        hashes[name] = sha256_file(out_dir / name)
    return hashes


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    """The artifact's commit point, written last: a reader without it sees no artifact."""
    text = json.dumps(manifest, indent=1, sort_keys=True, default=str)
    atomic_write_text(path, text)


def write_artifact(
    out_dir: Path, files: Mapping[str, Writer], manifest: Mapping[str, Any], name: str
) -> dict[str, Any]:
    """Write `files`, then manifest `name` holding `manifest` plus `files: {name: sha256}`."""
    full = {**manifest, "files": write_files(out_dir, files)}
    write_manifest(Path(out_dir) / name, full)
    return full


def verify_files(out_dir: Path, hashes: Mapping[str, str], what: str) -> None:
    """Refuse, naming the file, when a listed file is missing or its sha256 differs."""
    for fname, expected in hashes.items():
        f = Path(out_dir) / fname
        if not f.is_file():
            raise ArtifactError(f"{f}: file of the {what} is missing")
        actual = sha256_file(f)
        if actual != expected:
            raise ArtifactError(
                f"{f}: sha256 {actual[:12]}… does not match the recorded {str(expected)[:12]}… "
                f"(the {what} changed after it was written)"
            )


def read_artifact(out_dir: Path, name: str, what: str, hint: str) -> dict[str, Any]:
    """The manifest of a verified artifact (every listed file's sha256 checked)."""
    path = Path(out_dir) / name
    if not path.is_file():
        raise ArtifactError(f"{out_dir}: no {name}, so no complete {what} ({hint})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        hashes = dict(manifest["files"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable {what} manifest ({exc}; {hint})") from None
    verify_files(out_dir, hashes, what)
    return manifest
