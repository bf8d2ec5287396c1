"""Lifecycle: young accounts, fast ramps, sleepers that wake up with a spike; declared status.

Red flags: little business history (BIS), accounts bought or registered in bulk and kept
dormant before use (providers' "hydra" reports), very fast ramps to high volume.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from exportguard.features import agg
from exportguard.features.context import NS_DAY, Context, factorize, floats

RAMP_TOKENS = 10_000_000
IDLE_GAP_NS = 30 * NS_DAY
WEEK_NS = 7 * NS_DAY


def _ramp_days(ctx: Context) -> np.ndarray:
    """Days from sign-up to the hour the account's cumulative tokens reached RAMP_TOKENS."""
    h = ctx.hourly  # sorted by account, then hour
    acc, time, tokens = h["acc"], h["time"], h["tokens"]
    cum = np.cumsum(tokens)
    before = np.concatenate([[0.0], cum])[np.searchsorted(acc, acc, side="left")]
    reached = (cum - before) >= RAMP_TOKENS
    crossing = agg.group_min(acc[reached], time[reached].astype(np.float64), ctx.n_acc)
    c = crossing[ctx.req_acc]
    out = np.full(ctx.n_req, np.nan)
    ok = ~np.isnan(c) & (c < ctx.req_asof)
    created = ctx.created[ctx.req_acc]
    out[ok] = np.maximum(c[ok] - created[ok], 0.0) / NS_DAY
    return out


def _dormant_spike(ctx: Context) -> np.ndarray:
    """Max weekly tokens from the first >=30-day idle gap on, over the median active week."""
    n, h = ctx.n_req, ctx.hourly
    j = ctx.hourly_join
    j = j.where(h["tokens"][j.rows] > 0)
    time = ctx.req_asof[j.req] - j.age
    order = np.argsort(j.req, kind="stable")  # rows of one request are already in time order
    req, time, age = j.req[order], time[order], j.age[order]
    tokens = h["tokens"][j.rows[order]]
    prev = np.empty_like(time)
    prev[1:] = time[:-1]
    first = np.ones(len(req), dtype=bool)
    first[1:] = req[1:] != req[:-1]
    prev[first] = ctx.created[ctx.req_acc[req[first]]]
    gap_end = agg.group_min(
        req[(time - prev) >= IDLE_GAP_NS], time[(time - prev) >= IDLE_GAP_NS].astype(float), n
    )
    week = (age - 1) // WEEK_NS  # 0 = the 7 days just before as_of
    pr, pw, sums = agg.pair_sums(req, week, tokens)
    median = pd.Series(sums).groupby(pr).median()
    med = np.full(n, np.nan)
    med[median.index.to_numpy()] = median.to_numpy()
    gap_week = (ctx.req_asof - gap_end - 1) // WEEK_NS  # week index of the gap's end; NaN: none
    after = pw <= gap_week[pr]
    peak = agg.group_max(pr[after], sums[after], n)
    out = np.full(n, np.nan)
    ok = ~np.isnan(gap_end) & (med > 0)
    out[ok] = peak[ok] / med[ok]
    return out


def lifecycle_features(ctx: Context) -> dict[str, np.ndarray]:
    """Lifecycle family, one value per request."""
    acc = ctx.tables.accounts
    t_codes, t_uniques = factorize(acc["account_type"])
    is_org = np.array([str(t).strip().lower() == "organization" for t in t_uniques] + [False])
    return {
        "account_age_days": (ctx.req_asof - ctx.created[ctx.req_acc]) / NS_DAY,
        "days_to_first_10m_tokens": _ramp_days(ctx),
        "dormant_then_spike_ratio": _dormant_spike(ctx),
        "research_exemption": floats(acc["research_exemption"])[ctx.req_acc],
        "is_channel_partner": floats(acc["is_channel_partner"])[ctx.req_acc],
        "is_organization": is_org[t_codes].astype(np.float64)[ctx.req_acc],
    }
