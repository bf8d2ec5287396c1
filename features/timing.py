"""Time zone: does the account's daily rhythm and browser clock fit its declared country?

Red flag: relay services and remote operators work to another country's day (a UTC+8
working rhythm behind a US or EU declaration). The activity profile is the last 90 days of
requests by UTC hour of day. The expected offset of a country is policy (`utc_offsets`,
one standard offset per country), so a tolerance of 2 hours absorbs daylight saving and
the neighbouring zones of large countries.
"""

from __future__ import annotations

import numpy as np

from exportguard.features import agg
from exportguard.features.context import NS_DAY, NS_HOUR, Context

PROFILE_WINDOW_NS = 90 * NS_DAY
#: Local hour around which human API activity centres (a 09-18 working day with some evening use).
LOCAL_ACTIVITY_CENTRE_H = 14.0
#: Local business hours of the rhythm templates.
BUSINESS_HOURS = (9.0, 18.0)
#: Hours of browser-clock difference tolerated before it counts as a mismatch.
TZ_TOLERANCE_H = 2.0
#: A browser clock this close to a restricted country's offset is "that country's clock".
TZ_MATCH_H = 0.25


def circular_hours(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance between two clock readings in hours, on the 24-hour circle (0-12)."""
    d = np.mod(a - b, 24.0)
    return np.minimum(d, 24.0 - d)


def business_template(offsets: np.ndarray) -> np.ndarray:
    """(n, 24) indicator of UTC hours that fall in local business hours at each offset."""
    centre_utc = np.arange(24) + 0.5
    local = np.mod(centre_utc[None, :] + offsets[:, None], 24.0)
    return ((local >= BUSINESS_HOURS[0]) & (local < BUSINESS_HOURS[1])).astype(np.float64)


def row_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows; NaN where a row is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((xc**2).sum(axis=1) * (yc**2).sum(axis=1))
    return agg.share((xc * yc).sum(axis=1), den)


def timing_features(ctx: Context) -> dict[str, np.ndarray]:
    """Time-zone family, one value per request."""
    n, h, j = ctx.n_req, ctx.hourly, ctx.hourly_join.within(PROFILE_WINDOW_NS)
    offsets = ctx.offsets()
    declared_off = offsets[ctx.declared[ctx.req_acc]]
    hod = (h["time"][j.rows] // NS_HOUR) % 24
    profile = agg.dense_profile(j.req, hod, h["requests"][j.rows], n, 24)
    mass = profile.sum(axis=1)

    angle = 2.0 * np.pi * (np.arange(24) + 0.5) / 24.0
    c, s = profile @ np.cos(angle), profile @ np.sin(angle)
    mean_hour_utc = np.mod(np.arctan2(s, c) * 24.0 / (2.0 * np.pi), 24.0)
    implied = np.mod(LOCAL_ACTIVITY_CENTRE_H - mean_hour_utc, 24.0)
    gap = circular_hours(implied, declared_off)
    gap[(mass <= 0) | np.isnan(declared_off)] = np.nan

    corr8 = row_corr(profile, business_template(np.full(n, 8.0)))
    corr_decl = row_corr(profile, business_template(np.nan_to_num(declared_off)))
    excess = corr8 - corr_decl
    excess[(mass <= 0) | np.isnan(declared_off)] = np.nan

    lg, jl = ctx.logins, ctx.logins_join
    tz = lg["tz_hours"][jl.rows]
    known = ~np.isnan(tz)
    decl_l = declared_off[jl.req]
    mismatch = known & ~np.isnan(decl_l) & (circular_hours(tz, decl_l) > TZ_TOLERANCE_H)
    restricted_offsets = np.array(
        [
            ctx.policy.utc_offsets[c]
            for c in ctx.policy.restricted_countries
            if c in ctx.policy.utc_offsets
        ]
    )
    near_restricted = np.zeros(len(tz), dtype=bool)
    for off in np.unique(restricted_offsets):
        near_restricted |= known & (circular_hours(tz, off) <= TZ_MATCH_H)
    comparable = agg.total(jl.req[known & ~np.isnan(decl_l)], None, n)
    return {
        "activity_tz_gap_hours": gap,
        "utc8_rhythm_excess": excess,
        "browser_tz_mismatch_share": agg.share(agg.total(jl.req[mismatch], None, n), comparable),
        "browser_tz_restricted_share": agg.share(
            agg.total(jl.req[mismatch & near_restricted], None, n), comparable
        ),
    }
