"""The batch input: a Parquet feature table checked up front, fingerprinted, scanned for duplicate ids.

Checks happen before any scoring so a wrong file fails in a second with a message naming
the column, not an hour later. Duplicate ids are found in a first pass over the id column
alone, keeping 8 bytes per row (a 64-bit hash), then confirmed exactly on the few
candidates, so memory stays small even for tens of millions of accounts.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from exportguard.batch.rows import ID
from exportguard.batch.store import BatchError
from exportguard.digest import sha256_file
from exportguard.features.registry import FEATURE_NAMES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputInfo:
    path: Path
    rows: int
    row_groups: int
    as_of: pd.Timestamp | None  # from an `as_of` column written by `exportguard features`


def _numeric(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_null(t)
    )


def inspect_input(path: Path) -> InputInfo:
    """Open the feature table and check its columns and types; BatchError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise BatchError(f"feature table {path} does not exist or is not a file")
    try:
        pf = pq.ParquetFile(path, pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise BatchError(f"{path}: not a readable Parquet file ({exc})") from None
    schema = pf.schema_arrow
    absent = [c for c in (ID, *FEATURE_NAMES) if c not in schema.names]
    if absent:
        raise BatchError(f"{path}: lacks {len(absent)} required column(s): {absent[:8]}")
    id_type = schema.field(ID).type
    if not (pa.types.is_string(id_type) or pa.types.is_large_string(id_type)):
        raise BatchError(f"{path}: column account_id must hold strings, not {id_type}")
    wrong = [
        f"{n} ({schema.field(n).type})" for n in FEATURE_NAMES if not _numeric(schema.field(n).type)
    ]
    if wrong:
        raise BatchError(f"{path}: feature column(s) are not numeric: {wrong[:8]}")
    return InputInfo(path, pf.metadata.num_rows, pf.num_row_groups, _file_as_of(pf, path))


def _file_as_of(pf: pq.ParquetFile, path: Path) -> pd.Timestamp | None:
    """The single as-of time recorded in the table's `as_of` column, if it has one."""
    if "as_of" not in pf.schema_arrow.names:
        return None
    lo = hi = None
    for batch in pf.iter_batches(columns=["as_of"]):
        col = batch.column(0)
        if col.null_count:
            raise BatchError(f"{path}: column as_of has null values")
        mm = pc.min_max(col)
        lo = mm["min"].as_py() if lo is None else min(lo, mm["min"].as_py())
        hi = mm["max"].as_py() if hi is None else max(hi, mm["max"].as_py())
    if lo is None:
        return None
    if lo != hi:
        raise BatchError(
            f"{path}: column as_of holds several times ({lo} .. {hi}); score one as-of time per run"
        )
    ts = pd.Timestamp(lo)
    return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).as_unit("ns")


def fingerprint_file(path: Path) -> str:
    """sha256 of the input file's bytes: the run id changes when the input does."""
    return sha256_file(path)


def _hashes(ids: pa.Array) -> np.ndarray:
    values = ids.drop_null().to_numpy(zero_copy_only=False).astype(object)
    return pd.util.hash_array(values, categorize=False)


def duplicate_ids(path: Path, batch_rows: int = 200_000) -> set[str]:
    """Account ids that occur more than once in the table (nulls excluded)."""
    pf = pq.ParquetFile(path, pre_buffer=False)
    parts = [_hashes(b.column(0)) for b in pf.iter_batches(batch_size=batch_rows, columns=[ID])]
    if not parts:
        return set()
    hashes = np.sort(np.concatenate(parts))
    candidates = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
    if len(candidates) == 0:
        return set()
    counts: Counter[str] = Counter()
    for b in pf.iter_batches(batch_size=batch_rows, columns=[ID]):
        ids = b.column(0).drop_null()
        hit = np.isin(_hashes(ids), candidates)
        counts.update(ids.filter(pa.array(hit)).to_pylist())
    dups = {k for k, c in counts.items() if c > 1}
    log.info("%d account id(s) occur more than once; their rows are quarantined", len(dups))
    return dups
