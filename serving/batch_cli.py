"""Subcommands of batch rescoring."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `exportguard` parser."""
