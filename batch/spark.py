"""`--engine spark`: the same chunk processing and Scorer, run by PySpark `mapInPandas`.

Spark reads the Parquet feature table and hands each task Arrow batches of at most
`chunk_rows` rows; every batch is processed by `batch_rows.process_chunk` exactly as the
local engine does and written by the task straight into the run's staging dir (so OUT
must be on a filesystem that the driver and all executors share, e.g. an NFS mount);
the task returns only the chunk's sidecar. The driver then runs the same `finalize`.

The model travels as the bundle files' bytes (a broadcast of a few hundred KB, no
pickled booster); each task checks their sha256 against the driver's bundle digest before
use, and a worker loads the verified bundle once (`load_bundle` verifies again).
Master: `--spark-master`, else whatever `spark-submit` / `SPARK_*` / spark-defaults.conf
say, else `local[*]`. A task that finds its chunk already finished (same rows, files
matching their checksums) skips it, so a rerun after a failure resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from exportguard.batch.plan import Plan
from exportguard.batch.rows import (
    ID,
    RunInfo,
    output_schema,
    process_chunk,
    quarantine_schema,
)
from exportguard.batch.store import Staging
from exportguard.features.registry import FEATURE_NAMES
from exportguard.monitoring.drift import chunk_stats
from exportguard.scoring.bundle import (
    BUNDLE_FILES,
    BundleError,
    bundle_digest,
    checked_bundle,
    section_hashes,
)
from exportguard.scoring.scorer import Scorer

log = logging.getLogger(__name__)

SHIPPED = (*BUNDLE_FILES, "metadata.json")
#: Chunks of one Spark partition are numbered partition * STRIDE + batch number.
STRIDE = 1_000_000
_SCORERS: dict[str, Scorer] = {}


def bundle_bytes(path: Path) -> dict[str, bytes]:
    """The bundle's files as bytes: what is shipped to executors."""
    return {name: (Path(path) / name).read_bytes() for name in SHIPPED}


def scorer_from_bytes(files: dict[str, bytes], expected_sha256: str, threads: int = 1) -> Scorer:
    """Verify shipped bundle bytes against the expected digest; load once per worker process."""
    hashes = {n: hashlib.sha256(files[n]).hexdigest() for n in BUNDLE_FILES}
    try:
        meta = json.loads(files["metadata.json"])
        sections = section_hashes(meta)
    except (ValueError, TypeError, AttributeError) as exc:
        raise BundleError(f"shipped model bundle has unreadable metadata ({exc})") from None
    if bundle_digest(hashes, sections) != expected_sha256:
        raise BundleError(
            f"shipped model bundle does not match the driver's sha256 {expected_sha256[:12]}…"
        )
    if expected_sha256 not in _SCORERS:
        tmp = Path(tempfile.mkdtemp(prefix="exportguard-bundle-"))
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        bundle = checked_bundle(tmp)
        if bundle.sha256 != expected_sha256:
            raise BundleError(f"bundle unpacked at {tmp} has sha256 {bundle.sha256[:12]}…")
        _SCORERS[expected_sha256] = Scorer(bundle, n_jobs=threads)
    return _SCORERS[expected_sha256]


def _process_partition(
    batches: Iterator[pd.DataFrame],
    *,
    files: dict[str, bytes],
    expected: str,
    out: str,
    info: RunInfo,
    duplicates: frozenset[str],
    threads: int,
) -> Iterator[pd.DataFrame]:
    """mapInPandas body: score each Arrow batch of the partition as one chunk."""
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is None:  # only ever called inside a Spark task
        raise RuntimeError("score_partition must run inside a Spark task")
    partition = context.partitionId()
    staging = Staging(Path(out), info.run_id)
    schema, qschema = output_schema(info), quarantine_schema()
    scorer = None
    for number, pdf in enumerate(batches):
        index = partition * STRIDE + number
        positions = pdf["row_index"].to_numpy(dtype=np.int64)
        first_row = int(positions.min()) if len(positions) else -1
        meta = staging.finished(index)
        if meta is None or meta["first_row"] != first_row or meta["rows_in"] != len(pdf):
            scorer = scorer or scorer_from_bytes(files, expected, threads)
            frame = pdf.drop(columns=["row_index"])
            result = process_chunk(scorer, frame, positions, info, duplicates)
            stats = chunk_stats(
                result.scored, result.values, FEATURE_NAMES, scorer.bundle.reference, info.top_k
            )
            meta = staging.write_chunk(
                index,
                first_row,
                len(pdf),
                (result.scored, schema),
                (result.quarantined, qschema),
                stats,
            )
        yield pd.DataFrame({"meta": [json.dumps(meta)]})


def spark_session(master: str | None = None) -> Any:
    """A SparkSession (the active one, or a new one; local[*] unless configured otherwise)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        from exportguard.batch.store import BatchError

        raise BatchError(
            "--engine spark needs pyspark (pip install 'exportguard[spark]') and Java 17+"
        ) from None
    builder = SparkSession.builder.appName("exportguard-batch")
    if master:
        builder = builder.master(master)
    return builder.getOrCreate()


def score_spark(plan: Plan) -> list[dict[str, Any]]:
    """Run the chunk loop on Spark; returns the finished chunks' sidecars."""
    from functools import partial

    from pyspark.sql import SparkSession

    owned = SparkSession.getActiveSession() is None
    spark = spark_session(plan.config.spark_master)
    try:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(plan.config.chunk_rows))
        log.info("Spark master %s", spark.sparkContext.master)
        df = spark.read.parquet(str(plan.input.path)).select(
            ID, *FEATURE_NAMES, "_metadata.row_index"
        )
        dup_rows = (
            df.groupBy(ID).count().where(f"count > 1 AND {ID} IS NOT NULL").select(ID).collect()
        )
        duplicates = frozenset(r[0] for r in dup_rows)
        if duplicates:
            log.info(
                "%d account id(s) occur more than once; their rows are quarantined", len(duplicates)
            )
        files = spark.sparkContext.broadcast(bundle_bytes(plan.bundle.path))
        threads = int(spark.sparkContext.getConf().get("spark.task.cpus", "1"))
        body = partial(
            _broadcast_partition,
            shipped=files,
            expected=plan.bundle.sha256,
            out=str(Path(plan.config.out).resolve()),
            info=plan.info,
            duplicates=duplicates,
            threads=threads,
        )
        plan.staging.open()
        rows = df.mapInPandas(body, "meta string").collect()
        return [json.loads(r["meta"]) for r in rows]
    finally:
        if owned:
            spark.stop()


def _broadcast_partition(
    batches: Iterator[pd.DataFrame], *, shipped: Any, **kw: Any
) -> Iterator[pd.DataFrame]:
    return _process_partition(batches, files=shipped.value, **kw)
