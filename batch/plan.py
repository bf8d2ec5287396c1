"""A batch run's plan: its options, the checked model, the input, the as-of time and the run id.

Everything that decides a run's output is settled here, before any row is scored, and
the run id is derived from it: the same input, model and options give the same run id,
so a rerun resumes (or finds the committed run) instead of scoring again. The local loop
(`batch.run`), the Spark loop (`batch.spark`) and the commit (`batch.commit`) all take a
`Plan`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from exportguard.batch.inputs import InputInfo, fingerprint_file, inspect_input
from exportguard.batch.rows import RunInfo
from exportguard.batch.store import BatchError, Staging, run_id_for
from exportguard.features.registry import FEATURE_NAMES
from exportguard.scoring.bundle import Bundle, checked_bundle

ENGINES = ("local", "spark")


@dataclass(frozen=True)
class BatchConfig:
    """Options of a batch run (the CLI's flags); everything but `out` shapes the run id."""

    out: Path
    model: Path = Path("models/champion")
    engine: str = "local"
    chunk_rows: int = 50_000
    top_k: int = 5
    contributions: bool = False
    max_quarantine_share: float = 0.01
    n_jobs: int = 0  # 0 = all cores
    spark_master: str | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise BatchError(f"unknown engine {self.engine!r}; choose one of {ENGINES}")
        if self.chunk_rows < 1:
            raise BatchError(f"chunk size must be a positive number of rows, got {self.chunk_rows}")
        if not 1 <= self.top_k <= len(FEATURE_NAMES):
            raise BatchError(f"top-k must be between 1 and {len(FEATURE_NAMES)}, got {self.top_k}")
        if not 0.0 <= self.max_quarantine_share <= 1.0:
            raise BatchError(
                f"max quarantine share must be in [0, 1], got {self.max_quarantine_share}"
            )

    @property
    def threads(self) -> int:
        return self.n_jobs or os.cpu_count() or 1


@dataclass(frozen=True)
class Plan:
    """Everything a run needs once the input and the model are checked."""

    config: BatchConfig
    bundle: Bundle
    input: InputInfo
    fingerprint: str
    info: RunInfo
    staging: Staging
    source: str


def plan_run(
    features: Path,
    config: BatchConfig,
    as_of: pd.Timestamp | None = None,
    fingerprint: str | None = None,
    source: str | None = None,
) -> Plan:
    """Check the model and the input, settle the as-of time and derive the run id."""
    bundle = checked_bundle(Path(config.model))  # hashes, feature list and feature spec
    info = inspect_input(Path(features))
    if as_of is not None and info.as_of is not None and pd.Timestamp(as_of) != info.as_of:
        raise BatchError(
            f"--as-of {as_of} differs from the as_of {info.as_of} recorded in {features}"
        )
    resolved = pd.Timestamp(as_of) if as_of is not None else info.as_of
    if resolved is None:
        raise BatchError(f"{features} has no as_of column; give --as-of T")
    fingerprint = fingerprint or fingerprint_file(Path(features))
    run_id = run_id_for(
        {
            "input": fingerprint,
            "model": bundle.sha256,
            "as_of": resolved.isoformat(),
            "chunk_rows": config.chunk_rows,
            "top_k": config.top_k,
            "contributions": config.contributions,
            "engine": config.engine,
        }
    )
    run = RunInfo(
        run_id=run_id,
        as_of=resolved,
        model_name=bundle.name,
        model_version=bundle.version,
        model_sha256=bundle.sha256,
        top_k=config.top_k,
        contributions=config.contributions,
    )
    staging = Staging(config.out, run_id)
    return Plan(config, bundle, info, fingerprint, run, staging, source or str(features))
