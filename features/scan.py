"""Contract tables read out of core: validated in chunks, kept on disk, scanned by the engine.

`contract.read_tables(..., scan=[...])` reads each named activity table (`SCANNABLE_TABLES`)
in chunks of `BATCH_ROWS` rows. Every chunk is coerced and checked by the same code as a
table read whole (`columns.coerce_table`, `schemas.validate_frame`, the foreign-key and
consistency checks), and written to one Parquet file in the contract's types, so memory
holds one chunk at a time whatever the table's size. What needs the whole table (unique
ids, the data horizon, rows after a time) is asked of that file by DuckDB, which streams
it; the answers feed the same problem and warning messages.

The file's columns are the contract's, typed as `read_tables` types them in memory and as
the feature engine receives them (timestamps naive UTC in microseconds, text as strings,
integers that may be missing as float64), plus `account_code`: the row of the row's
account in the accounts table (NULL when it names none), the integer the engine joins on.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from exportguard.errors import ExportguardError
from exportguard.features.columns import SPECS, Problem
from exportguard.features.tables import ScannedTable

#: rows per chunk: a 500k-row api_usage chunk is ~0.1 GB coerced
BATCH_ROWS = 500_000

T = TypeVar("T")
_END = object()


def prefetched(items: Iterator[T]) -> Iterator[T]:
    """`items`, each next one produced by a background thread while the caller works on the
    current one (reading and decoding Parquet release the GIL; the checks then overlap)."""
    with ThreadPoolExecutor(1, thread_name_prefix="exportguard-read") as pool:
        upcoming = pool.submit(next, items, _END)
        while True:
            item = upcoming.result()
            if item is _END:
                return
            upcoming = pool.submit(next, items, _END)
            yield item  # type: ignore[misc]


def file_columns(path: Path) -> list[str]:
    """The column names of a Parquet file's schema or a CSV file's header."""
    if path.suffix == ".csv":
        return list(pd.read_csv(path, dtype=str, nrows=0).columns)
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def chunks(path: Path, table: str, rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """The contract columns of `path` in chunks, typed as `contract` reads a whole file
    (CSV: every value as text; Parquet: as stored, text dictionary-decoded)."""
    names = [s.name for s in SPECS[table]]
    if path.suffix == ".csv":
        # every column, as a whole-table read: with usecols pandas would accept a row with
        # too many fields, silently keeping the first ones
        reader = pd.read_csv(path, dtype=str, keep_default_na=True, na_values=[""], chunksize=rows)
        with reader:
            for chunk in reader:
                yield chunk[names]
        return
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    # pre_buffer keeps every column chunk read so far until the reader is done (measured,
    # a 105M-row file: Arrow's pool +1.2 GB after 40 chunks; without it flat at 0.15 GB)
    source = pq.ParquetFile(path, pre_buffer=False)
    for batch in source.iter_batches(batch_size=rows, columns=names):
        # text as categoricals over the chunk's own distinct values (a batch read with
        # read_dictionary carries its whole row group's dictionary: measured 5x slower)
        columns = [
            pc.dictionary_encode(c)
            if pa.types.is_string(c.type) or pa.types.is_large_string(c.type)
            else c
            for c in batch.columns
        ]
        yield pa.Table.from_arrays(columns, names=batch.schema.names).to_pandas()


def arrow_schema(table: str) -> pa.Schema:
    """The written file's schema: the contract's columns as the engine receives them."""
    fields = []
    for spec in SPECS[table]:
        if spec.kind == "ts":
            kind = pa.timestamp("us")
        elif spec.kind == "int":
            kind = pa.float64() if spec.nullable else pa.int64()  # as `coerce_table` gives
        elif spec.kind == "float":
            kind = pa.float64()
        elif spec.kind == "bool":
            kind = pa.bool_()
        else:
            kind = pa.string()
        fields.append(pa.field(spec.name, kind))
    if any(s.name == "account_id" for s in SPECS[table]):
        fields.append(pa.field("account_code", pa.int64()))
    return pa.schema(fields)


def _arrow_column(values: pd.Series, kind: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(kind):
        return pa.array(values.to_numpy(dtype="datetime64[us]"), mask=values.isna().to_numpy())
    if pa.types.is_string(kind):
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes = values.cat.codes.to_numpy()
            categories = pa.array(values.cat.categories.to_numpy(dtype=object), type=pa.string())
            return pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), categories).cast(
                pa.string()
            )
        return pa.array(values.astype(object).where(values.notna(), None), type=pa.string())
    if pa.types.is_boolean(kind):
        return pa.array(values.astype(object).where(values.notna(), None), type=pa.bool_())
    # a value that failed coercion is NaN here and the read fails with its problem anyway
    return pa.array(values, from_pandas=True).cast(kind, safe=False)


class ScanWriteError(ExportguardError):
    """The validated copy cannot be written (no space, no permission): not the data's fault."""


class ScanWriter:
    """Writes coerced chunks of one table to a Parquet file in a temporary directory, each
    in a background thread while the caller checks the next (Arrow's writer releases the
    GIL); `close` waits for the last."""

    def __init__(self, table: str, directory: Path | None = None) -> None:
        import pyarrow.parquet as pq

        self.table = table
        self.schema = arrow_schema(table)
        where = directory or Path(tempfile.gettempdir())
        try:
            self.owner = tempfile.TemporaryDirectory(prefix="exportguard-scan-", dir=directory)
            self.path = Path(self.owner.name) / f"{table}.parquet"
            self.writer = pq.ParquetWriter(self.path, self.schema)
        except (OSError, pa.ArrowException) as exc:
            raise ScanWriteError(self._message(where, exc)) from None
        self.rows = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="exportguard-write")
        self._pending: Future[None] | None = None

    def _message(self, where: Path, exc: BaseException) -> str:
        return (
            f"cannot write the validated copy of {self.table} under {where}: {exc} "
            "(EXPORTGUARD_SCAN_DIR sets the directory; it needs about the table's size free)"
        )

    def write(self, coerced: pd.DataFrame, account_codes: pa.Array | None) -> None:
        """Append a coerced chunk, after the one before (ScanWriteError when the disk refuses
        it); the chunk must not change until the next `write` or `close`."""
        self._wait()
        self._pending = self._pool.submit(self._write, coerced, account_codes)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            pending.result()
        except (OSError, pa.ArrowIOError) as exc:
            raise ScanWriteError(self._message(self.path.parent, exc)) from None

    def abandon(self) -> None:
        """Stop without a file (the read failed): the thread ends, the directory goes."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.writer.close()
        except (OSError, pa.ArrowException):
            pass
        self.owner.cleanup()

    def _write(self, coerced: pd.DataFrame, account_codes: pa.Array | None) -> None:
        arrays = [
            _arrow_column(coerced[f.name], f.type) for f in self.schema if f.name != "account_code"
        ]
        if "account_code" in self.schema.names:
            if account_codes is None:
                account_codes = pa.nulls(len(coerced), type=pa.int64())
            arrays.append(account_codes)
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self.rows += len(coerced)

    def close(self) -> ScannedTable:
        try:
            self._wait()
        finally:
            self._pool.shutdown()
        try:
            self.writer.close()
        except (OSError, pa.ArrowIOError) as exc:
            raise ScanWriteError(self._message(self.path.parent, exc)) from None
        columns = tuple(f.name for f in self.schema)
        return ScannedTable(self.path, self.rows, columns, owner=self.owner)


def _query(sql: str, params: list[object]) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        return con.execute(sql, params).df()
    finally:
        con.close()


def _source(scanned: ScannedTable) -> str:
    path = str(scanned.path).replace("'", "''")
    return f"read_parquet('{path}', file_row_number = true)"


def rows_after(scanned: ScannedTable, column: str, limit: pd.Timestamp) -> pd.Series:
    """The values of `column` after `limit`, in the file's row order."""
    frame = _query(
        f"SELECT {column} AS v FROM {_source(scanned)} WHERE {column} > ? ORDER BY file_row_number",
        [pd.Timestamp(limit).to_pydatetime()],
    )
    return frame["v"].astype("datetime64[ns]")


def duplicated(scanned: ScannedTable, column: str) -> pd.Series:
    """Every value of `column` that occurs more than once, one per row, in row order (as
    `Series.duplicated(keep=False)` selects them)."""
    frame = _query(
        f"SELECT {column} AS v FROM {_source(scanned)} WHERE {column} IS NOT NULL "
        f"QUALIFY count(*) OVER (PARTITION BY {column}) > 1 ORDER BY file_row_number",
        [],
    )
    return frame["v"].astype(object)


def time_counts(scanned: ScannedTable, column: str) -> tuple[np.ndarray, np.ndarray]:
    """As `horizon.time_counts`: the distinct non-null times of `column` and their rows."""
    frame = _query(
        f"SELECT {column} AS t, count(*) AS n FROM {_source(scanned)} "
        f"WHERE {column} IS NOT NULL GROUP BY 1 ORDER BY 1",
        [],
    )
    return (
        frame["t"].to_numpy(dtype="datetime64[ns]"),
        frame["n"].to_numpy(dtype=np.int64),
    )


def merge_problems(found: list[Problem]) -> list[Problem]:
    """Problems of the same check found in several chunks as one: rows added, the first
    three distinct examples kept (those a whole-table check would give), first-seen order."""
    merged: dict[tuple[str, str | None, str], Problem] = {}
    for p in found:
        key = (p.table, p.column, p.message)
        if key not in merged:
            merged[key] = p
            continue
        old = merged[key]
        examples = tuple(dict.fromkeys(old.examples + p.examples))[:3]
        merged[key] = Problem(p.table, p.column, p.message, old.rows + p.rows, examples)
    return list(merged.values())
