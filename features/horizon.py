"""The data's "now": the one definition that validate, features, examples and batch use.

The default as-of time of a data directory is the end of the bulk of its API usage: the
end of the latest `api_usage` hour that is not cut off from the rest of the usage by a day
or more of silence. Payments, logins and labels never set it, so a handful of mis-dated
rows in those tables cannot move every account's as-of time; usage rows after such a gap
(at most 1% of the usage) are stray, and are reported. A world that ended months ago keeps
its own end as the default, so replays need no flags; a scheduled job passes `--as-of`.

Rows dated after the current wall-clock time (plus an hour of clock skew) cannot be real
and are refused by the contract check; `now` is a parameter so tests and replays can fix
it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pandas as pd

#: Tolerated clock difference between the system that exported the data and this one.
CLOCK_SKEW = pd.Timedelta(hours=1)
#: Silence in the usage that separates stray rows from the bulk of the activity.
STRAY_GAP = pd.Timedelta(hours=24)
#: Usage rows after such a gap count as stray only if they are at most this share.
STRAY_MAX_SHARE = 0.01
#: Activity tables that set the horizon when api_usage has no rows, in order.
FALLBACK_ACTIVITY = (("payments", "paid_at"), ("logins", "login_at"))


def wall_clock_now() -> pd.Timestamp:
    """The current time as naive UTC (the contract's timestamp convention)."""
    return pd.Timestamp.now(tz="UTC").tz_localize(None).as_unit("ns")


@dataclass(frozen=True)
class Horizon:
    """Where the data ends, which table said so, and the usage rows left out as stray."""

    at: pd.Timestamp
    source: str
    stray_rows: int = 0
    stray_latest: pd.Timestamp | None = None
    bulk_latest: pd.Timestamp | None = None


def time_counts(times: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The distinct non-null times of a column, sorted (datetime64[ns]), and their row counts."""
    counts = times.dropna().astype("datetime64[ns]").value_counts(sort=False).sort_index()
    return counts.index.to_numpy(dtype="datetime64[ns]"), counts.to_numpy(dtype=np.int64)


def _bulk_end(
    values: np.ndarray, counts: np.ndarray
) -> tuple[pd.Timestamp, int, pd.Timestamp | None]:
    """Latest time of the bulk, the number of stray rows after it, and the latest stray, of
    distinct sorted times and their row counts (`time_counts`)."""
    n = int(counts.sum())
    gaps = np.diff(values) > STRAY_GAP.to_timedelta64()
    after = n - np.cumsum(counts)[:-1]  # rows after each gap position
    cut = np.flatnonzero(gaps & (after <= STRAY_MAX_SHARE * n))
    if not len(cut):
        return pd.Timestamp(values[-1]), 0, None
    i = int(cut[0])
    return pd.Timestamp(values[i]), int(after[i]), pd.Timestamp(values[-1])


#: where a table's times come from: a frame in memory, or a function giving `time_counts`
#: (a table left on disk, counted by the engine)
TimeSource: TypeAlias = pd.DataFrame | Callable[[str], tuple[np.ndarray, np.ndarray]] | None


def _counts(source: TimeSource, column: str) -> tuple[np.ndarray, np.ndarray] | None:
    if source is None:
        return None
    values, counts = source(column) if callable(source) else time_counts(source[column])
    return (values, counts) if len(values) else None


def activity_horizon(frames: Mapping[str, TimeSource]) -> Horizon | None:
    """The default as-of time of these tables (None when there is no activity at all)."""
    usage = _counts(frames.get("api_usage"), "hour")
    if usage is not None:
        end, stray, latest = _bulk_end(*usage)
        return Horizon(end + pd.Timedelta(hours=1), "api_usage", stray, latest, end)
    for table, col in FALLBACK_ACTIVITY:
        found = _counts(frames.get(table), col)
        if found is not None:
            end, stray, latest = _bulk_end(*found)
            return Horizon(end, table, stray, latest, end)
    return None


def horizon_rule() -> dict[str, object]:
    """The horizon definition as data: pinned in a model's feature spec (scoring.spec)."""
    return {
        "rule": "end of the bulk of api_usage (latest hour not cut off by a silence)",
        "stray_gap_hours": STRAY_GAP / pd.Timedelta(hours=1),
        "stray_max_share": STRAY_MAX_SHARE,
        "fallback": [f"{table}.{column}" for table, column in FALLBACK_ACTIVITY],
    }
