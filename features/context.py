"""The state of the parts computed beside the relational engine (`features.org`,
`features.graph`): requests as account positions and int64 nanoseconds, strings as integer
codes (countries in one shared vocabulary), computed once per feature computation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd

from exportguard.features.policy import Policy
from exportguard.features.tables import RawTables

log = logging.getLogger(__name__)

NS_HOUR = 3_600 * 10**9
NS_DAY = 24 * NS_HOUR
NAT = np.iinfo(np.int64).min


def to_ns(values: pd.Series) -> np.ndarray:
    """Int64 nanoseconds since the epoch (naive UTC) of a timestamp column; NaT -> NAT."""
    s = values
    if not pd.api.types.is_datetime64_any_dtype(s):
        s = pd.to_datetime(s, utc=True)
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s.to_numpy(dtype="datetime64[ns]").view(np.int64)


def timestamp_ns(value: object) -> int:
    """A single as-of time as int64 ns (naive UTC; aware times are converted to UTC)."""
    ts = pd.Timestamp(value)
    if ts.tz is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(ts.as_unit("ns").value)


def floats(values: pd.Series) -> np.ndarray:
    """Float64 array of a numeric or boolean column, missing -> NaN."""
    return pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)


def factorize(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 = missing) and the unique values, for strings or categoricals."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes.astype(np.int64, copy=False), np.asarray(uniques, dtype=object)


class Vocab:
    """A growing string -> code table shared by all country columns of one computation."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._index)

    def code(self, key: str) -> int:
        return self._index.setdefault(str(key).strip().upper(), len(self._index))

    def encode(self, values: pd.Series) -> np.ndarray:
        """Codes of `values` in this vocabulary (-1 = missing)."""
        codes, uniques = factorize(values)
        mapped = np.array([self.code(u) for u in uniques] + [-1], dtype=np.int64)
        return mapped[codes]  # code -1 picks the trailing -1

    def mask(self, keys: Iterable[str]) -> np.ndarray:
        """Boolean lookup of length len+1 (index -1 -> False) marking `keys`."""
        wanted = {self.code(k) for k in keys}
        out = np.zeros(len(self._index) + 1, dtype=bool)
        out[list(wanted)] = True
        out[-1] = False
        return out

    def keys(self) -> list[str]:
        return list(self._index)


def index_codes(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each value in `index` (-1 = unknown or missing), hashing each distinct once."""
    codes, uniques = factorize(values)
    mapped = np.append(index.get_indexer(uniques), -1).astype(np.int64)
    return mapped[codes]


class SortedGroups:
    """Group rows by an int64 key with one sort (no hashing: millions of distinct keys hash
    slowly); already-sorted input, common in exports, skips the sort."""

    def __init__(self, key: np.ndarray) -> None:
        ordered = len(key) < 2 or bool(np.all(key[1:] >= key[:-1]))
        self.order = None if ordered else np.argsort(key, kind="stable")
        skey = key if self.order is None else key[self.order]
        starts = np.flatnonzero(np.diff(skey)) + 1
        self.starts = np.concatenate([[0], starts]).astype(np.int64) if len(skey) else starts
        self.keys = skey[self.starts]

    def sum(self, values: np.ndarray) -> np.ndarray:
        v = values if self.order is None else values[self.order]
        if len(v) == 0:
            return np.zeros(0)
        return np.add.reduceat(v.astype(np.float64, copy=False), self.starts)


class Context:
    """Requests and accounts of one feature computation, and codes of its tables' columns."""

    def __init__(
        self,
        tables: RawTables,
        req_acc: np.ndarray,
        req_asof: np.ndarray,
        policy: Policy,
        max_prefix_accounts: int,
    ) -> None:
        self.tables = tables
        self.policy = policy
        self.max_prefix_accounts = max_prefix_accounts
        self.req_acc = req_acc
        self.req_asof = req_asof
        self.n_req = len(req_acc)
        self.vocab = Vocab()
        self._codes: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        acc = tables.accounts
        self.account_ids = pd.Index(acc["account_id"])
        self.n_acc = len(acc)
        self.created = to_ns(acc["created_at"])

    def codes(self, table: str, column: str) -> tuple[np.ndarray, np.ndarray]:
        """Factorized codes and uniques of a string column, computed once per computation."""
        key = (table, column)
        if key not in self._codes:
            frame = self.tables.table(table)
            if frame is None:
                raise KeyError(f"table {table} is not loaded")
            self._codes[key] = factorize(frame[column])
        return self._codes[key]
