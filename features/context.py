"""One feature computation's shared state: integer codes of the raw tables and request joins.

Every family works on the same encoding: strings become integer codes once (countries in
one shared vocabulary so that an IP country can be compared with a declared country),
timestamps become int64 nanoseconds, and each dated table is joined to the *requests*
(account, as_of) by account code, keeping only rows dated strictly before the request's
as_of. Aggregates are then `np.bincount` over the request index: one vectorised pass for
any mix of accounts and times, no per-account Python loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

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


@dataclass(frozen=True)
class Joined:
    """Event rows paired with requests: request index, event row index, as_of - time (ns)."""

    req: np.ndarray
    rows: np.ndarray
    age: np.ndarray

    def where(self, mask: np.ndarray) -> Joined:
        return Joined(self.req[mask], self.rows[mask], self.age[mask])

    def within(self, ns: int) -> Joined:
        """Rows inside the trailing window [as_of - ns, as_of)."""
        return self.where(self.age <= ns)


def account_codes(table: str, values: pd.Series, index: pd.Index) -> np.ndarray:
    """Account positions of a table's rows; rows naming an unknown account are counted."""
    codes = index_codes(values, index)
    unknown = int((codes < 0).sum())
    if unknown:
        log.warning("%s: %d row(s) name an account not in accounts; not used", table, unknown)
    return codes


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
    """Requests, accounts and lazily encoded tables for one feature computation."""

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
        self.declared = self.vocab.encode(acc["declared_country"])
        self.billing = self.vocab.encode(acc["billing_country"])
        self.signup_country = self.vocab.encode(acc["signup_ip_country"])
        # requests grouped by account, for expanding event rows to requests
        self.req_order = np.argsort(req_acc, kind="stable")
        self.req_count = np.bincount(req_acc, minlength=self.n_acc)
        self.req_start = np.cumsum(self.req_count) - self.req_count
        self.acc_max_asof = np.full(self.n_acc, NAT, dtype=np.int64)
        np.maximum.at(self.acc_max_asof, req_acc, req_asof)

    # --- helpers ---------------------------------------------------------------------------
    def restricted(self) -> np.ndarray:
        return self.vocab.mask(self.policy.restricted_countries)

    def intermediary(self) -> np.ndarray:
        return self.vocab.mask(self.policy.intermediary_countries)

    def offsets(self) -> np.ndarray:
        """UTC offset (hours) of each vocabulary country from policy; NaN where unknown."""
        for k in self.policy.utc_offsets:
            self.vocab.code(k)
        out = np.full(len(self.vocab) + 1, np.nan)
        for k, off in self.policy.utc_offsets.items():
            out[self.vocab.code(k)] = off
        return out

    def join(self, ev_acc: np.ndarray, ev_time: np.ndarray) -> Joined:
        """Pair each event with every request of its account whose as_of is after the event."""
        ok = (ev_acc >= 0) & (ev_time != NAT)
        ok[ok] = ev_time[ok] < self.acc_max_asof[ev_acc[ok]]
        rows = np.flatnonzero(ok)
        acc = ev_acc[rows]
        k = self.req_count[acc]
        if self.n_req == 0 or k.max(initial=0) <= 1:
            req = self.req_order[self.req_start[acc]]
        else:
            rows = np.repeat(rows, k)
            first = np.repeat(self.req_start[acc], k)
            offset = np.arange(len(rows)) - np.repeat(np.cumsum(k) - k, k)
            req = self.req_order[first + offset]
        age = self.req_asof[req] - ev_time[rows]
        keep = age > 0
        return Joined(req[keep], rows[keep], age[keep])

    # --- encoded tables (computed on first use, shared by families) --------------------------
    @cached_property
    def usage(self) -> dict[str, np.ndarray]:
        u = self.tables.api_usage
        return {
            "acc": account_codes("api_usage", u["account_id"], self.account_ids),
            "time": to_ns(u["hour"]),
            "country": self.vocab.encode(u["ip_country"]),
            "requests": floats(u["requests"]),
            "tokens": floats(u["input_tokens"]) + floats(u["output_tokens"]),
            "input_tokens": floats(u["input_tokens"]),
            "end_users": floats(u["end_user_ids"]),
        }

    @cached_property
    def usage_join(self) -> Joined:
        return self.join(self.usage["acc"], self.usage["time"])

    @cached_property
    def hourly(self) -> dict[str, np.ndarray]:
        """api_usage summed per (account, hour), sorted by account then hour; only rows dated
        before the latest as_of asked for their account."""
        u = self.usage
        ok = (u["acc"] >= 0) & (u["time"] != NAT)
        ok[ok] = u["time"][ok] < self.acc_max_asof[u["acc"][ok]]  # rows no request can use
        ok = np.flatnonzero(ok)
        hour_codes, hour_values = pd.factorize(u["time"][ok], sort=True)
        n_hours = len(hour_values) + 1
        key = u["acc"][ok] * n_hours + hour_codes
        groups = SortedGroups(key)
        uniq = groups.keys

        def total(col: str) -> np.ndarray:
            return groups.sum(u[col][ok])

        return {
            "acc": (uniq // n_hours).astype(np.int64),
            "time": np.asarray(hour_values, dtype=np.int64)[uniq % n_hours],
            "requests": total("requests"),
            "tokens": total("tokens"),
            "end_users": total("end_users"),
        }

    @cached_property
    def hourly_join(self) -> Joined:
        return self.join(self.hourly["acc"], self.hourly["time"])

    @cached_property
    def logins(self) -> dict[str, np.ndarray]:
        lg = self.tables.logins
        return {
            "acc": account_codes("logins", lg["account_id"], self.account_ids),
            "time": to_ns(lg["login_at"]),
            "country": self.vocab.encode(lg["ip_country"]),
            "tz_hours": floats(lg["browser_tz_offset_min"]) / 60.0,
        }

    @cached_property
    def logins_join(self) -> Joined:
        return self.join(self.logins["acc"], self.logins["time"])

    @cached_property
    def payments(self) -> dict[str, np.ndarray]:
        p = self.tables.payments
        return {
            "acc": account_codes("payments", p["account_id"], self.account_ids),
            "time": to_ns(p["paid_at"]),
            "issuer": self.vocab.encode(p["issuer_country"]),
            "amount": floats(p["amount_usd"]),
        }

    @cached_property
    def payments_join(self) -> Joined:
        return self.join(self.payments["acc"], self.payments["time"])

    def codes(self, table: str, column: str) -> tuple[np.ndarray, np.ndarray]:
        """Factorized codes and uniques of a string column, computed once per computation."""
        key = (table, column)
        if key not in self._codes:
            frame = self.tables.table(table)
            if frame is None:
                raise KeyError(f"table {table} is not loaded")
            self._codes[key] = factorize(frame[column])
        return self._codes[key]

    def req_attr(self, per_account: np.ndarray) -> np.ndarray:
        """An account attribute broadcast to requests."""
        return per_account[self.req_acc]
