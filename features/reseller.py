"""Reseller / volume: many keys, many end users, round-the-clock traffic, fast growth.

Red flags of unauthorised relay services ("transfer stations"): key pooling, undisclosed
end users behind one account, flat 24x7 traffic from aggregated customers, traffic from
many network prefixes. Counts are 0 when there was no traffic (nothing was used); ratios
over no traffic are NaN.
"""

from __future__ import annotations

import numpy as np

from exportguard.features import agg
from exportguard.features.context import NS_DAY, NS_HOUR, Context, factorize

WINDOW_NS = 30 * NS_DAY
#: 1970-01-01 was a Thursday: shift so that hour-of-week 0 is Monday 00:00 UTC.
_EPOCH_HOUR_OF_WEEK = 72


def reseller_features(ctx: Context) -> dict[str, np.ndarray]:
    """Reseller/volume family, one value per request."""
    n = ctx.n_req
    j = ctx.usage_join.within(WINDOW_NS)
    # keys matter only inside the window: encode those rows, not the whole table
    key_codes, _ = factorize(ctx.tables.api_usage["api_key_id"].take(j.rows))
    prefix_codes, _ = ctx.codes("api_usage", "ip_prefix")

    h, jh_all = ctx.hourly, ctx.hourly_join
    jh = jh_all.within(WINDOW_NS)
    active = h["requests"][jh.rows] > 0
    ja = jh.where(active)
    active_hours = agg.total(ja.req, None, n)
    end_users = h["end_users"][ja.rows]
    tokens_30 = agg.total(jh.req, h["tokens"][jh.rows], n)
    prev = jh_all.where((jh_all.age > WINDOW_NS) & (jh_all.age <= 2 * WINDOW_NS))
    tokens_prev = agg.total(prev.req, h["tokens"][prev.rows], n)
    growth = np.log1p(tokens_30) - np.log1p(tokens_prev)
    growth[(tokens_30 <= 0) & (tokens_prev <= 0)] = np.nan

    how = (h["time"][ja.rows] // NS_HOUR + _EPOCH_HOUR_OF_WEEK) % 168
    pr, _, sums = agg.pair_sums(ja.req, how, h["requests"][ja.rows])
    entropy = agg.entropy_bits(pr, sums, n) / np.log2(168.0)

    age_hours = np.ceil((ctx.req_asof - ctx.created[ctx.req_acc]) / NS_HOUR)
    window_hours = np.clip(age_hours, 1.0, WINDOW_NS / NS_HOUR)
    return {
        "api_keys_30d": agg.distinct(j.req, key_codes, n),
        "max_hourly_end_users_30d": agg.group_max(ja.req, end_users, n, empty=0.0),
        "end_users_per_active_hour_30d": agg.share(agg.total(ja.req, end_users, n), active_hours),
        "log_tokens_30d": np.log1p(tokens_30),
        "token_growth_30d": growth,
        "hour_of_week_entropy_30d": entropy,
        "active_hour_share_30d": np.minimum(active_hours / window_hours, 1.0),
        "ip_prefixes_30d": agg.distinct(j.req, prefix_codes[j.rows], n),
    }
