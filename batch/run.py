"""Batch rescoring of every account: stream a feature table through the one Scorer, commit atomically.

`run_batch` reads the Parquet feature table in bounded chunks (`chunk_rows`), so memory
does not grow with the number of accounts; each chunk's scored and quarantined rows and
its statistics are written to the run's staging dir (`batch.store`). A killed run rerun
with the same arguments skips the chunks whose files still match their checksums. When
every chunk is done, `finalize` checks that scored + quarantined = input, refuses the run
if too many rows were quarantined, writes the summary and drift report, and commits by
writing the manifest last. `--engine spark` swaps only the chunk loop (`batch.spark`). The plan (config, checked
model, input, run id) is `batch.plan`.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from exportguard.batch.commit import finalize
from exportguard.batch.inputs import duplicate_ids
from exportguard.batch.plan import ENGINES, BatchConfig, Plan, plan_run
from exportguard.batch.rows import ID, output_schema, process_chunk, quarantine_schema
from exportguard.batch.spark import score_spark
from exportguard.batch.store import atomic_json
from exportguard.features.registry import FEATURE_NAMES
from exportguard.monitoring.drift import chunk_stats
from exportguard.scoring.scorer import Scorer

__all__ = ["ENGINES", "BatchConfig", "Plan", "plan_run", "run_batch", "score_local"]

log = logging.getLogger(__name__)


def run_batch(
    features: Path,
    config: BatchConfig,
    as_of: pd.Timestamp | None = None,
    fingerprint: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """Score a feature table into OUT and commit it; returns the run's manifest."""
    plan = plan_run(features, config, as_of, fingerprint, source)
    done = plan.staging.committed()
    if done is not None:
        log.info(
            "run %s is already committed in %s; nothing to do", plan.info.run_id, plan.staging.final
        )
        return done
    plan.staging.open()
    atomic_json(plan.staging.dir / "plan.json", _plan_record(plan))
    log.info(
        "batch run %s: %d rows from %s, model %s %s (sha256 %s…), as of %s, engine %s",
        plan.info.run_id,
        plan.input.rows,
        features,
        plan.bundle.name,
        plan.bundle.version,
        plan.bundle.sha256[:12],
        plan.info.as_of,
        config.engine,
    )
    if config.engine == "spark":
        metas = score_spark(plan)
    else:
        metas = score_local(plan)
    return finalize(plan, metas)


def _plan_record(plan: Plan) -> dict[str, Any]:
    return {
        "run_id": plan.info.run_id,
        "input": {
            "path": str(plan.input.path),
            "fingerprint": plan.fingerprint,
            "rows": plan.input.rows,
        },
        "model_sha256": plan.bundle.sha256,
        "as_of": plan.info.as_of.isoformat(),
        "chunk_rows": plan.config.chunk_rows,
        "engine": plan.config.engine,
    }


def score_local(plan: Plan) -> list[dict[str, Any]]:
    """Stream the table chunk by chunk through the Scorer; finished chunks are skipped."""
    dups = duplicate_ids(plan.input.path)
    scorer: Scorer | None = None
    metas = []
    schema, qschema = output_schema(plan.info), quarantine_schema()
    # pre_buffer=True keeps every pre-buffered row group alive until the reader closes
    # (arrow's read-range cache), which makes memory grow with the table; off, it is flat.
    pf = pq.ParquetFile(plan.input.path, pre_buffer=False)
    progress = Progress(plan.input.rows)
    first_row, skipped = 0, 0
    batches = pf.iter_batches(batch_size=plan.config.chunk_rows, columns=[ID, *FEATURE_NAMES])
    for index, batch in enumerate(batches):
        n = batch.num_rows
        meta = plan.staging.finished(index)
        if meta is not None and meta["first_row"] == first_row and meta["rows_in"] == n:
            skipped += 1
            progress.update(n, skipped=True)
        else:
            if scorer is None:
                scorer = Scorer(plan.bundle, n_jobs=plan.config.threads)
            frame = batch.to_pandas()
            result = process_chunk(
                scorer, frame, np.arange(first_row, first_row + n), plan.info, dups
            )
            stats = chunk_stats(
                result.scored, result.values, FEATURE_NAMES, plan.bundle.reference, plan.info.top_k
            )
            meta = plan.staging.write_chunk(
                index, first_row, n, (result.scored, schema), (result.quarantined, qschema), stats
            )
            progress.update(n)
        metas.append(meta)
        first_row += n
    progress.close()
    if skipped:
        log.info(
            "resumed: skipped %d of %d chunks finished by an earlier attempt", skipped, len(metas)
        )
    return metas


class Progress:
    """A progress bar on a terminal, else a log line at most every `every` seconds."""

    def __init__(self, total: int, every: float = 30.0) -> None:
        self.total, self.done, self.skipped, self.every = total, 0, 0, every
        self.start = self.last = time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="rows", unit_scale=True, desc="scoring")

    def update(self, n: int, skipped: bool = False) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if skipped:
            self.skipped += n
            return
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            rate = (self.done - self.skipped) / max(now - self.start, 1e-9)
            log.info(
                "%d / %d rows (%.0f%%), scoring %.0f rows/s",
                self.done,
                self.total,
                100.0 * self.done / max(self.total, 1),
                rate,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
