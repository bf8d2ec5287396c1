"""Read a data directory and check it against the raw-data contract (v1).

Two steps, so that a report can say exactly what is wrong:

1. *Coercion* (`columns.py`): each contract column is converted to its in-memory type
   (naive-UTC timestamps, strings, numbers, booleans); values that cannot be converted are
   counted as problems, never silently turned into missing values.
2. *Validation* with pandera: nullability, unique ids, enumerations, country codes,
   ranges; then cross-table checks (foreign keys, no row after the current time, the data
   horizon of `features.horizon`).

Every problem found is collected into one `ContractError` report (table, column, what is
wrong, how many rows, a few examples) instead of stopping at the first.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from exportguard.errors import ExportguardError
from exportguard.features.columns import SPECS, ColumnSpec, Problem, as_plain, coerce_table
from exportguard.features.horizon import (
    CLOCK_SKEW,
    STRAY_GAP,
    Horizon,
    TimeSource,
    activity_horizon,
    wall_clock_now,
)
from exportguard.features.tables import (
    OPTIONAL_TABLES,
    REQUIRED_TABLES,
    SCANNABLE_TABLES,
    TIME_COLUMNS,
    RawTables,
    ScannedTable,
)

log = logging.getLogger(__name__)

#: Slack allowed between the data horizon and non-activity timestamps (labels, sign-ups).
HORIZON_SLACK = pd.Timedelta(days=1)


class ContractError(ExportguardError):
    """The data directory breaks the contract; the message is the full report."""

    def __init__(self, problems: list[Problem], data_dir: Path) -> None:
        self.problems = problems
        lines = [f"{data_dir}: {len(problems)} problem(s) with the data contract:"]
        lines += [f"  - {p.render()}" for p in problems]
        super().__init__("\n".join(lines))


@dataclass
class ValidationReport:
    """What `read_tables` found: row counts, warnings, and which optional tables are absent."""

    rows: dict[str, int] = field(default_factory=dict)
    missing_optional: list[str] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    horizon: pd.Timestamp | None = None
    horizon_source: str | None = None  # the table the horizon came from; None if declared

    def render(self) -> str:
        lines = [f"{name}: {n:,} rows" for name, n in self.rows.items()]
        lines += [
            f"{name}: absent (optional; its features will be missing)"
            for name in self.missing_optional
        ]
        if self.horizon is not None:
            how = (
                f"the end of the bulk of {self.horizon_source}"
                if self.horizon_source
                else "declared"
            )
            lines.append(f"data horizon: {self.horizon} ({how})")
        lines += [f"warning: {w.render()}" for w in self.warnings]
        return "\n".join(lines)


def _find_file(data_dir: Path, table: str) -> Path | None:
    """The table's one file; a link or entry that exists but cannot be opened is named."""
    names = (data_dir / f"{table}.parquet", data_dir / f"{table}.csv")
    for p in names:
        if os.path.lexists(p) and not p.is_file():
            try:
                p.stat()
            except OSError as exc:  # a symlink loop, a dangling link, no permission
                reason = exc.strerror or type(exc).__name__
                raise ContractError(
                    [Problem(table, None, f"{p.name} exists but cannot be read: {reason}", 0)],
                    data_dir,
                ) from None
            raise ContractError(
                [Problem(table, None, f"{p.name} exists but is not a regular file", 0)], data_dir
            )
    candidates = [p for p in names if p.is_file()]
    if len(candidates) > 1:
        raise ContractError(
            [Problem(table, None, "both a .parquet and a .csv file exist; keep one", 0)], data_dir
        )
    return candidates[0] if candidates else None


def _parquet_type_problems(path: Path, table: str) -> list[Problem]:
    """Text stored where the contract has a number or a boolean is a type error, as over HTTP."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    problems = []
    for spec in SPECS[table]:
        if spec.kind not in ("int", "float", "bool") or spec.name not in schema.names:
            continue
        kind = schema.field(spec.name).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            wanted, column = (
                ("a boolean", "boolean") if spec.kind == "bool" else ("a number", "numeric")
            )
            problems.append(
                Problem(
                    table,
                    spec.name,
                    f"stored as text in Parquet ({kind}) where the contract has {wanted}; "
                    f"write a {column} column",
                    0,
                )
            )
    return problems


def _delimiter_hint(path: Path) -> str:
    """A hint when a CSV header looks delimited by something other than commas."""
    if path.suffix != ".csv":
        return ""
    with open(path, encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
        if sep in header and "," not in header:
            return f" (the header looks delimited by {name}; contract CSV files use commas)"
    return ""


def _read_file(path: Path, specs: tuple[ColumnSpec, ...]) -> pd.DataFrame:
    if path.suffix == ".csv":
        # Everything as text; coercion converts and reports what does not parse.
        return pd.read_csv(path, dtype=str, keep_default_na=True, na_values=[""])
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    wanted = [s.name for s in specs if s.name in schema.names]
    text = [
        n
        for n in wanted
        if pa.types.is_string(schema.field(n).type)
        or pa.types.is_large_string(schema.field(n).type)
    ]
    # dictionary-decoding text columns gives categoricals without hashing every row
    return pq.read_table(path, columns=wanted, read_dictionary=text).to_pandas()


@dataclass
class _Scan:
    """A table validated in chunks (`features.scan`): its file and what the chunks found."""

    table: ScannedTable
    schema: list[Problem]
    foreign: list[Problem]
    early: list[Problem]  # warnings: rows dated before their account's sign-up


def _scan_table(
    table: str,
    path: Path,
    accounts: pd.DataFrame | None,
    problems: list[Problem],
    scan_dir: Path | None,
) -> _Scan | None:
    """Coerce and check `path` chunk by chunk with the checks of a whole table, writing the
    coerced rows to disk; None (with the problem reported) when it cannot be read."""
    import pyarrow as pa

    from exportguard.features.context import index_codes
    from exportguard.features.scan import (
        ScanWriteError,
        ScanWriter,
        chunks,
        duplicated,
        file_columns,
        prefetched,
    )
    from exportguard.features.scan import merge_problems as merged
    from exportguard.features.schemas import validate_frame

    try:
        names = file_columns(path)
    except Exception as exc:  # any reader failure is a bad file, reported by name
        problems.append(
            Problem(table, None, f"cannot read {path.name}: {type(exc).__name__}: {exc}", 0)
        )
        return None
    missing = [s.name for s in SPECS[table] if s.name not in names]
    if missing:
        message = "required column(s) missing" + _delimiter_hint(path)
        problems.append(Problem(table, ", ".join(missing), message, 0))
        return None
    if path.suffix == ".parquet":
        problems.extend(_parquet_type_problems(path, table))
    lookups = _AccountLookups.of(accounts)
    load: list[Problem] = []
    schema: list[Problem] = []
    foreign: list[Problem] = []
    early = ValidationReport()
    writer = ScanWriter(table, scan_dir)
    try:
        for raw in prefetched(chunks(path, table)):
            coerced = coerce_table(table, raw, load)
            schema += validate_frame(table, coerced, unique=False)
            codes = None
            if lookups is not None and lookups.positions is not None:
                # each row's account looked up once, for the foreign key, the sign-up check
                # and the code the engine joins on (measured at 1M accounts,
                # a 500k-row chunk with three lookups 1.9 s, with one 1.1 s)
                rows = index_codes(coerced["account_id"], lookups.positions)
                ids = coerced["account_id"]
                bad = (rows < 0) & ids.notna().to_numpy()
                if bad.any():
                    foreign.append(Problem.of(table, "account_id", UNKNOWN_ACCOUNT, ids[bad]))
                col = TIME_COLUMNS[table]
                start = np.where(
                    rows >= 0, lookups.created_at[np.maximum(rows, 0)], np.datetime64("NaT")
                )
                times = coerced[col].to_numpy(dtype="datetime64[ns]")
                before = times + _slack(table).to_timedelta64() < start
                if before.any():
                    early.warnings.append(
                        Problem.of(table, col, EARLY_ROWS, coerced.loc[before, col])
                    )
                codes = pa.array(rows, mask=rows < 0)
            elif lookups is not None:  # ids not unique (reported): the whole-table checks
                one = {"accounts": lookups.accounts, table: coerced}
                _foreign_keys(one, foreign, lookups.known)
                _consistency_warnings(one, early, lookups.created)
            writer.write(coerced, codes)
        scanned = writer.close()
    except ScanWriteError:  # the disk's problem, not the data's: said as it is
        writer.abandon()
        raise
    except Exception as exc:  # any reader failure is a bad file, reported by name
        writer.abandon()
        problems.append(
            Problem(table, None, f"cannot read {path.name}: {type(exc).__name__}: {exc}", 0)
        )
        return None
    problems.extend(merged(load))
    for spec in SPECS[table]:
        if spec.unique:  # over the whole file, as one check of a table read whole
            dup = duplicated(scanned, spec.name)
            if len(dup):
                schema.append(Problem.of(table, spec.name, "duplicate id (must be unique)", dup))
    return _Scan(scanned, merged(schema), merged(foreign), merged(early.warnings))


@dataclass(frozen=True)
class _AccountLookups:
    """What each chunk's checks look accounts up in, built once."""

    accounts: pd.DataFrame
    known: pd.Index
    created: pd.Series
    positions: pd.Index | None  # the ids by row, for account codes; None when not unique
    created_at: np.ndarray  # created_at by row, datetime64[ns]

    @classmethod
    def of(cls, accounts: pd.DataFrame | None) -> _AccountLookups | None:
        if accounts is None or not len(accounts):
            return None
        ids = pd.Index(accounts["account_id"].astype(str))
        return cls(
            accounts,
            pd.Index(accounts["account_id"].dropna().unique()),
            _created(accounts),
            ids if ids.is_unique else None,
            accounts["created_at"].to_numpy(dtype="datetime64[ns]"),
        )


def _load(
    data_dir: Path,
    problems: list[Problem],
    report: ValidationReport,
    scan: Collection[str] = (),
    scans: dict[str, _Scan] | None = None,
    scan_dir: Path | None = None,
) -> dict[str, pd.DataFrame]:
    frames: dict[str, pd.DataFrame] = {}
    for table in REQUIRED_TABLES + OPTIONAL_TABLES:
        path = _find_file(data_dir, table)
        if path is None:
            if table in REQUIRED_TABLES:
                problems.append(
                    Problem(
                        table,
                        None,
                        f"required table missing: expected {table}.parquet or {table}.csv",
                        0,
                    )
                )
            else:
                report.missing_optional.append(table)
            continue
        if table in scan and scans is not None:
            found = _scan_table(table, path, frames.get("accounts"), problems, scan_dir)
            if found is not None:
                scans[table] = found
                report.rows[table] = found.table.rows
            continue
        try:
            raw = _read_file(path, SPECS[table])
        except Exception as exc:  # any reader failure is a bad file, reported by name
            problems.append(
                Problem(table, None, f"cannot read {path.name}: {type(exc).__name__}: {exc}", 0)
            )
            continue
        missing = [s.name for s in SPECS[table] if s.name not in raw.columns]
        if missing:
            message = "required column(s) missing" + _delimiter_hint(path)
            problems.append(Problem(table, ", ".join(missing), message, 0))
            continue
        if path.suffix == ".parquet":
            problems.extend(_parquet_type_problems(path, table))
        frames[table] = coerce_table(table, raw, problems)
        report.rows[table] = len(raw)
    accounts = frames.get("accounts")
    if accounts is not None and not len(accounts):
        problems.append(Problem("accounts", None, "accounts has 0 rows: nothing to score", 0))
    return frames


#: the foreign-key problem of a row naming no account
UNKNOWN_ACCOUNT = "refers to an account not in accounts"

#: a label is the same label when these agree (the review may re-export what it exported)
LABEL_KEY = ["account_id", "label", "labelled_at", "source"]


def _merge_labels(
    frames: dict[str, pd.DataFrame], path: Path, problems: list[Problem], report: ValidationReport
) -> None:
    if not path.is_file():
        problems.append(Problem("labels", None, f"extra labels file {path} does not exist", 0))
        return
    try:
        raw = _read_file(path, SPECS["labels"])
    except Exception as exc:  # any reader failure is a bad file, reported by name
        problems.append(
            Problem("labels", None, f"cannot read {path}: {type(exc).__name__}: {exc}", 0)
        )
        return
    missing = [s.name for s in SPECS["labels"] if s.name not in raw.columns]
    if missing:
        problems.append(
            Problem("labels", ", ".join(missing), f"required column(s) missing in {path}", 0)
        )
        return
    extra = coerce_table("labels", raw, problems)
    base = frames.get("labels")
    merged = extra if base is None else pd.concat([base, extra], ignore_index=True)
    for column in ("account_id", "source", "typology"):
        if column in merged:
            merged[column] = merged[column].astype(object)
    frames["labels"] = merged.drop_duplicates(subset=LABEL_KEY, keep="first").reset_index(drop=True)
    report.rows["labels"] = len(frames["labels"])


def _schema_checks(frames: dict[str, pd.DataFrame], problems: list[Problem]) -> None:
    from exportguard.features.schemas import validate_frame

    coerced = {(p.table, p.column) for p in problems}
    for table, frame in frames.items():
        for p in validate_frame(table, frame):
            # a value that failed coercion is already reported; don't report it again as missing
            if not (p.message.startswith("missing value") and (table, p.column) in coerced):
                problems.append(p)


def _foreign_keys(
    frames: dict[str, pd.DataFrame], problems: list[Problem], known: pd.Index | None = None
) -> None:
    accounts = frames.get("accounts")
    if accounts is not None and len(accounts):  # 0 rows is reported once, not per table
        if known is None:
            known = pd.Index(accounts["account_id"].dropna().unique())
        for table in ("payments", "api_usage", "logins", "labels"):
            df = frames.get(table)
            if df is None:
                continue
            bad = ~df["account_id"].isin(known) & df["account_id"].notna()
            if bad.any():
                problems.append(
                    Problem.of(
                        table,
                        "account_id",
                        UNKNOWN_ACCOUNT,
                        df.loc[bad, "account_id"],
                    )
                )
    orgs = frames.get("organizations")
    if orgs is not None:
        known_orgs = pd.Index(orgs["org_id"].dropna().unique())
        for table in ("accounts", "ownership"):
            df = frames.get(table)
            if df is None:
                continue
            bad = df["org_id"].notna() & ~df["org_id"].isin(known_orgs)
            if bad.any():
                problems.append(
                    Problem.of(
                        table,
                        "org_id",
                        "refers to an organisation not in organizations",
                        df.loc[bad, "org_id"],
                    )
                )
    elif frames.get("ownership") is not None:
        problems.append(
            Problem("ownership", None, "ownership given without the organizations table", 0)
        )


def _after(
    frames: dict[str, pd.DataFrame], scans: dict[str, _Scan], table: str, limit: pd.Timestamp
) -> pd.Series | None:
    """The times of `table` after `limit`, in row order (None: the table is not there)."""
    col = TIME_COLUMNS[table]
    if table in scans:
        from exportguard.features.scan import rows_after

        return rows_after(scans[table].table, col, limit)
    df = frames.get(table)
    if df is None:
        return None
    return df.loc[df[col] > limit, col]


def _rows_after(
    frames: dict[str, pd.DataFrame],
    limit: pd.Timestamp,
    message: str,
    problems: list[Problem],
    scans: dict[str, _Scan] | None = None,
) -> None:
    """One problem per dated table with rows after `limit`."""
    for table, col in TIME_COLUMNS.items():
        late = _after(frames, scans or {}, table, limit)
        if late is not None and len(late):
            problems.append(Problem.of(table, col, message, late))


def _future_checks(
    frames: dict[str, pd.DataFrame],
    now: pd.Timestamp,
    problems: list[Problem],
    scans: dict[str, _Scan] | None = None,
) -> None:
    """Rows dated after the current time cannot be real: refuse them (they would set the as-of)."""
    message = (
        f"dated after the current time {now.floor('s')} (more than {CLOCK_SKEW} of clock "
        "skew): cannot be real"
    )
    _rows_after(frames, now + CLOCK_SKEW, message, problems, scans)


def _horizon_checks(
    frames: dict[str, pd.DataFrame],
    horizon: pd.Timestamp,
    problems: list[Problem],
    scans: dict[str, _Scan] | None = None,
) -> None:
    """With a declared horizon, rows dated after it (+1 day) break the declaration."""
    message = f"dated after the data horizon {horizon} (+1 day)"
    _rows_after(frames, horizon + HORIZON_SLACK, message, problems, scans)


def _late_row_warnings(
    frames: dict[str, pd.DataFrame],
    horizon: Horizon,
    report: ValidationReport,
    scans: dict[str, _Scan] | None = None,
) -> None:
    """Report stray usage and tables whose latest rows run past the usage's end."""
    if horizon.stray_rows:
        report.warnings.append(
            Problem(
                horizon.source,
                TIME_COLUMNS[horizon.source],
                f"dated after a gap of more than {STRAY_GAP} "
                f"following the bulk of the activity (which ends {horizon.bulk_latest}), "
                f"the latest {horizon.stray_latest}; they do not set the data horizon and no "
                "feature as of it uses them",
                horizon.stray_rows,
            )
        )
    limit = horizon.at + HORIZON_SLACK
    for table, col in TIME_COLUMNS.items():
        if table == horizon.source:
            continue
        late = _after(frames, scans or {}, table, limit)
        if late is not None and len(late):
            report.warnings.append(
                Problem.of(
                    table,
                    col,
                    f"runs past the data horizon {horizon.at} set by {horizon.source} (+1 day) "
                    f"up to {late.max()}; kept, but no feature as of the horizon "
                    "uses these rows",
                    late,
                )
            )


#: the consistency warning of rows dated before their account
EARLY_ROWS = (
    "dated before the account's created_at (kept; point-in-time features still use it only "
    "after sign-up time T)"
)


def _slack(table: str) -> pd.Timedelta:
    """How much earlier than its account's sign-up a row may be dated (an hour's bucket)."""
    return pd.Timedelta(hours=1) if table == "api_usage" else pd.Timedelta(0)


def _created(accounts: pd.DataFrame) -> pd.Series:
    created = accounts.set_index("account_id")["created_at"]
    return created[~created.index.duplicated()]


def _consistency_warnings(
    frames: dict[str, pd.DataFrame], report: ValidationReport, created: pd.Series | None = None
) -> None:
    accounts = frames.get("accounts")
    if accounts is None:
        return
    if created is None:
        created = _created(accounts)
    for table, col in (
        ("api_usage", "hour"),
        ("payments", "paid_at"),
        ("logins", "login_at"),
        ("labels", "labelled_at"),
    ):
        df = frames.get(table)
        if df is None or not len(df):
            continue
        start = df["account_id"].map(created)
        early = (df[col] + _slack(table) < start).to_numpy(dtype=bool, na_value=False)
        if early.any():
            report.warnings.append(Problem.of(table, col, EARLY_ROWS, df.loc[early, col]))


def read_tables(
    data_dir: str | Path,
    horizon: pd.Timestamp | None = None,
    now: pd.Timestamp | None = None,
    extra_labels: Path | None = None,
    scan: Collection[str] = (),
    scan_dir: Path | None = None,
) -> tuple[RawTables, ValidationReport]:
    """Load and validate every contract table in `data_dir`; raise ContractError listing all problems.

    `horizon` declares where the data ends (rows after it are errors); without it the
    horizon is derived (`features.horizon`). `now` is the wall-clock time rows may not pass.
    `extra_labels` is a labels table written elsewhere (the review workspace's
    `export-labels`): its rows join the directory's labels, duplicates dropped, before every
    check, so they are held to the same contract (columns, values, known accounts).
    `scan` names activity tables (`tables.SCANNABLE_TABLES`) to read out of core
    (`features.scan`): validated in chunks with the same checks and report, written in the
    contract's types to a temporary directory under `scan_dir` (default: the system's), and
    returned in `RawTables.scanned` for the feature engine to scan, never loaded whole.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ExportguardError(f"data directory {data_dir} does not exist or is not a directory")
    unknown = sorted(set(scan) - set(SCANNABLE_TABLES))
    if unknown:
        raise ExportguardError(
            f"cannot read {unknown} out of core; the tables that can be: {list(SCANNABLE_TABLES)}"
        )
    problems: list[Problem] = []
    report = ValidationReport()
    scans: dict[str, _Scan] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        frames = _load(data_dir, problems, report, scan, scans, scan_dir)
        if extra_labels is not None:
            _merge_labels(frames, Path(extra_labels), problems, report)
        _schema_checks(frames, problems)
    coerced = {(p.table, p.column) for p in problems}
    for found in scans.values():
        problems += [
            p
            for p in found.schema
            if not (p.message.startswith("missing value") and (p.table, p.column) in coerced)
        ]
    _foreign_keys(frames, problems)
    for found in scans.values():
        problems += found.foreign
    _future_checks(frames, wall_clock_now() if now is None else now, problems, scans)
    derived = None
    if horizon is not None:
        report.horizon = horizon
        _horizon_checks(frames, horizon, problems, scans)
    else:
        from exportguard.features.scan import time_counts

        sources: dict[str, TimeSource] = dict(frames)
        sources.update({t: partial(time_counts, found.table) for t, found in scans.items()})
        if (derived := activity_horizon(sources)) is not None:
            report.horizon, report.horizon_source = derived.at, derived.source
    if problems:
        raise ContractError(problems, data_dir)
    if derived is not None:
        _late_row_warnings(frames, derived, report, scans)
    _consistency_warnings(frames, report)
    for found in scans.values():
        report.warnings += found.early
    for w in report.warnings:
        log.warning("%s", w.render())
    tables = RawTables(
        **{
            name: as_plain(frames[name]) if name in frames else None
            for name in REQUIRED_TABLES + OPTIONAL_TABLES
        },
        scanned={t: found.table for t, found in scans.items()},
    )
    return tables, report


def scan_tables(
    data_dir: str | Path, horizon: pd.Timestamp | None = None, now: pd.Timestamp | None = None
) -> tuple[RawTables, ValidationReport]:
    """`read_tables` with every activity table (`SCANNABLE_TABLES`) out of core, its copy
    under EXPORTGUARD_SCAN_DIR: what `validate`, `features` and `batch --data` read (memory
    holds a chunk of them at a time, the feature engine scans the copies)."""
    from exportguard.settings import Settings

    scan_dir = Settings.from_env().scan_dir
    return read_tables(data_dir, horizon, now, scan=SCANNABLE_TABLES, scan_dir=scan_dir)


def parse_as_of(text: str) -> pd.Timestamp:
    """Parse a CLI time (ISO 8601; timezone-aware values are converted to naive UTC)."""
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise ExportguardError(
            f"--as-of {text!r} is not a date or time (use ISO 8601, e.g. 2026-10-01 or 2026-10-01T12:00)"
        ) from None
    if ts is pd.NaT or (isinstance(ts, float) and np.isnan(ts)):
        raise ExportguardError(f"--as-of {text!r} is not a date or time")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("ns")
