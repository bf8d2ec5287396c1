"""The raw tables of the data contract (../shared/data-contract.md), typed in memory.

`RawTables` is what every pure transform takes. After `exportguard.features.contract.read_tables`
has loaded and validated a data directory, every timestamp column is timezone-naive UTC
`datetime64[ns]`, ids and codes are strings, booleans are `bool`, counts are float64 or
int64, and an optional table that was absent is `None`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

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

    def table(self, name: str) -> pd.DataFrame | None:
        return getattr(self, name)

    def present(self) -> dict[str, pd.DataFrame]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    def horizon(self) -> pd.Timestamp:
        """The data's own 'now' (`features.horizon.activity_horizon`); 1970 with no activity."""
        from exportguard.features.horizon import activity_horizon

        found = activity_horizon({name: self.table(name) for name in TIME_COLUMNS})
        return found.at if found is not None else pd.Timestamp("1970-01-01")

    def with_tables(self, **tables: pd.DataFrame | None) -> RawTables:
        return replace(self, **tables)
