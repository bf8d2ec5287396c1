"""The raw tables of the data contract (../shared/data-contract.md), typed in memory.

`RawTables` is what every pure transform takes. After `exportguard.features.contract.read_tables`
has loaded and validated a data directory, every timestamp column is timezone-naive UTC
`datetime64[ns]`, ids and codes are strings, booleans are `bool`, counts are float64 or
int64, and an optional table that was absent is `None`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import pandas as pd

REQUIRED_TABLES = ("accounts", "payments", "api_usage", "logins", "labels")
OPTIONAL_TABLES = ("organizations", "ownership", "restricted_entities")
TABLE_NAMES = REQUIRED_TABLES + OPTIONAL_TABLES

#: The column that dates each row, for the point-in-time rule ("rows dated before T").
TIME_COLUMNS = {
    "accounts": "created_at",
    "payments": "paid_at",
    "api_usage": "hour",
    "logins": "login_at",
    "labels": "labelled_at",
    "organizations": "incorporated_at",
}


#: the tables `read_tables` can leave on disk (the many-row activity tables)
SCANNABLE_TABLES = ("payments", "api_usage", "logins")


@dataclass(frozen=True)
class ScannedTable:
    """A validated contract table left on disk: one Parquet file in the contract's types
    (timestamps naive UTC in microseconds, ids and codes as text) plus `account_code`, the
    row of its account in `RawTables.accounts` (NULL for none). Engines scan it in place."""

    path: Path
    rows: int
    columns: tuple[str, ...]
    #: what keeps `path` alive (its temporary directory), dropped with the tables
    owner: object = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class RawTables:
    accounts: pd.DataFrame
    payments: pd.DataFrame
    api_usage: pd.DataFrame
    logins: pd.DataFrame
    labels: pd.DataFrame
    organizations: pd.DataFrame | None = None
    ownership: pd.DataFrame | None = None
    restricted_entities: pd.DataFrame | None = None
    #: tables read out of core (their frame fields are None)
    scanned: dict[str, ScannedTable] = field(default_factory=dict)

    def table(self, name: str) -> pd.DataFrame | None:
        return getattr(self, name)

    def present(self) -> dict[str, pd.DataFrame]:
        """The tables held in memory."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "scanned" and getattr(self, f.name) is not None
        }

    def horizon(self) -> pd.Timestamp:
        """The data's own 'now' (`features.horizon.activity_horizon`); 1970 with no activity."""
        from exportguard.features.horizon import activity_horizon

        if self.scanned:
            raise ValueError(
                f"tables {sorted(self.scanned)} were read out of core; the data horizon is "
                "in read_tables' report"
            )
        found = activity_horizon({name: self.table(name) for name in TIME_COLUMNS})
        return found.at if found is not None else pd.Timestamp("1970-01-01")

    def with_tables(self, **tables: pd.DataFrame | None) -> RawTables:
        """These tables replaced; not the accounts or a scanned table of tables read out of
        core (the files on disk code accounts by their row in these accounts)."""
        clash = sorted(set(tables) & ({"accounts", "scanned"} | set(self.scanned)))
        if self.scanned and clash:
            raise ValueError(f"cannot replace {clash} of tables read out of core")
        return replace(self, **tables)  # type: ignore[arg-type]
