"""User-facing errors: the CLI prints their message (no traceback) and exits non-zero."""

from __future__ import annotations


class ExportguardError(Exception):
    """An error caused by input or configuration, explained in its message."""

    exit_code = 2


class BundleError(ExportguardError, ValueError):
    """A model bundle is missing, incomplete, tampered with or inconsistent."""
