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

from dataclasses import dataclass

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


def _bulk_end(times: pd.Series) -> tuple[pd.Timestamp, int, pd.Timestamp | None]:
    """Latest time of the bulk, the number of stray rows after it, and the latest stray."""
    values = np.sort(times.dropna().to_numpy(dtype="datetime64[ns]"))
    gaps = np.diff(values) > STRAY_GAP.to_timedelta64()
    after = len(values) - 1 - np.arange(len(values) - 1)  # rows after each gap position
    cut = np.flatnonzero(gaps & (after <= STRAY_MAX_SHARE * len(values)))
    if not len(cut):
        return pd.Timestamp(values[-1]), 0, None
    i = int(cut[0])
    return pd.Timestamp(values[i]), len(values) - 1 - i, pd.Timestamp(values[-1])


def activity_horizon(frames: dict[str, pd.DataFrame | None]) -> Horizon | None:
    """The default as-of time of these tables (None when there is no activity at all)."""
    usage = frames.get("api_usage")
    if usage is not None and usage["hour"].notna().any():
        end, stray, latest = _bulk_end(usage["hour"])
        return Horizon(end + pd.Timedelta(hours=1), "api_usage", stray, latest, end)
    for table, col in FALLBACK_ACTIVITY:
        df = frames.get(table)
        if df is not None and df[col].notna().any():
            end, stray, latest = _bulk_end(df[col])
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
