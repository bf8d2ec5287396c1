"""Distribution features: how an account's traffic is spread, so the model can find tells no rule names.

Three families, each a profile over the last 90 days rather than a single red flag:

- `network_mix`: the share of API requests, and of console logins, per `network_type`;
- `language_mix`: the share of prompt traffic per primary language, for the languages that
  carry most API traffic worldwide (PROFILE_LANGUAGES), restricted or not;
- `rhythm`: the hour-of-day profile of requests in the declared country's local time
  (night 00-06, work 09-18, evening 18-24 shares), its rhythm strength (the length of the
  mean resultant vector of the 24-hour profile: 0 for flat round-the-clock traffic, near 1
  for one tight daily burst) and the share of console logins at local night.

Shares over no rows in the window are NaN (nothing to describe), never 0.
"""

from __future__ import annotations

import numpy as np

from exportguard.features import agg
from exportguard.features.context import NS_DAY, NS_HOUR, Context, floats
from exportguard.features.language import primary_language

WINDOW_NS = 90 * NS_DAY
#: network_type values of the contract, in the order their features are declared.
NETWORK_TYPES = ("residential", "mobile", "business", "hosting", "vpn_proxy", "tor", "unknown")
LOGIN_NETWORK_TYPES = ("residential", "mobile", "business", "hosting", "vpn_proxy", "tor")
#: Prompt languages with most API traffic worldwide (ISO 639-1), restricted or not.
PROFILE_LANGUAGES = ("en", "zh", "ru", "fa", "es", "pt", "fr", "de", "ja", "ko", "ar", "vi")
NIGHT_H, WORK_H, EVENING_H = (0.0, 6.0), (9.0, 18.0), (18.0, 24.0)


def _category_codes(ctx: Context, table: str, column: str, values: tuple[str, ...]) -> np.ndarray:
    """Per row: index of its value in `values`, or -1 (other or missing)."""
    codes, uniques = ctx.codes(table, column)
    lookup = np.array(
        [values.index(v) if (v := str(u).strip().lower()) in values else -1 for u in uniques] + [-1]
    )
    return lookup[codes]


def _shares(req: np.ndarray, cat: np.ndarray, w: np.ndarray | None, k: int, n: int) -> np.ndarray:
    """(n, k) share of each category in the rows of each request (NaN rows without any)."""
    weights = np.ones(len(req)) if w is None else w
    known = cat >= 0
    prof = agg.dense_profile(req[known], cat[known], weights[known], n, k)
    den = agg.total(req, weights, n)
    out = np.full((n, k), np.nan)
    ok = den > 0
    out[ok] = prof[ok] / den[ok, None]
    return out


def _in_hours(hour: np.ndarray, span: tuple[float, float]) -> np.ndarray:
    return (hour >= span[0]) & (hour < span[1])


def profile_features(ctx: Context) -> dict[str, np.ndarray]:
    """Network-mix, language-mix and rhythm families, one value per request."""
    n, u = ctx.n_req, ctx.usage
    out: dict[str, np.ndarray] = {}
    j = ctx.usage_join.within(WINDOW_NS)
    reqs = u["requests"][j.rows]
    net = _category_codes(ctx, "api_usage", "network_type", NETWORK_TYPES)[j.rows]
    api = _shares(j.req, net, reqs, len(NETWORK_TYPES), n)
    for i, t in enumerate(NETWORK_TYPES):
        out[f"api_network_{t}_share_90d"] = api[:, i]

    jl = ctx.logins_join.within(WINDOW_NS)
    lnet = _category_codes(ctx, "logins", "network_type", LOGIN_NETWORK_TYPES)[jl.rows]
    logins = _shares(jl.req, lnet, None, len(LOGIN_NETWORK_TYPES), n)
    for i, t in enumerate(LOGIN_NETWORK_TYPES):
        out[f"login_network_{t}_share_90d"] = logins[:, i]

    codes, uniques = ctx.codes("api_usage", "top_language")
    lookup = np.array(
        [
            PROFILE_LANGUAGES.index(lang) if (lang := primary_language(v)) in PROFILE_LANGUAGES
            else -1
            for v in uniques
        ]
        + [-1]
    )  # fmt: skip
    lang = lookup[codes][j.rows]
    share = floats(ctx.tables.api_usage["top_language_share"])[j.rows]
    tokens = u["input_tokens"][j.rows] * np.where(np.isnan(share), 1.0, share)
    has_lang = codes[j.rows] >= 0  # hours with a dominant language reported (-1: none)
    prof = agg.dense_profile(
        j.req[lang >= 0], lang[lang >= 0], tokens[lang >= 0], n, len(PROFILE_LANGUAGES)
    )
    lang_total = agg.total(j.req[has_lang], tokens[has_lang], n)
    for i, code in enumerate(PROFILE_LANGUAGES):
        out[f"prompt_language_{code}_share_90d"] = agg.share(prof[:, i], lang_total)

    offsets = ctx.offsets()[ctx.declared[ctx.req_acc]]
    local = np.mod((u["time"][j.rows] // NS_HOUR) % 24 + 0.5 + offsets[j.req], 24.0)
    ok = ~np.isnan(local)
    mass = agg.total(j.req[ok], reqs[ok], n)
    for name, span in (("night", NIGHT_H), ("work", WORK_H), ("evening", EVENING_H)):
        sel = ok & _in_hours(local, span)
        out[f"local_{name}_traffic_share_90d"] = agg.share(
            agg.total(j.req[sel], reqs[sel], n), mass
        )
    angle = 2.0 * np.pi * np.where(ok, local, 0.0) / 24.0
    c = agg.total(j.req[ok], (reqs * np.cos(angle))[ok], n)
    s = agg.total(j.req[ok], (reqs * np.sin(angle))[ok], n)
    out["rhythm_strength_90d"] = agg.share(np.hypot(c, s), mass)

    lg = ctx.logins
    l_off = offsets[jl.req]
    l_local = np.mod((lg["time"][jl.rows] // NS_HOUR) % 24 + 0.5 + l_off, 24.0)
    l_ok = ~np.isnan(l_local)
    night = l_ok & _in_hours(l_local, NIGHT_H)
    out["login_local_night_share_90d"] = agg.share(
        agg.total(jl.req[night], None, n), agg.total(jl.req[l_ok], None, n)
    )
    # sums of the same rows in another order can exceed their total by an ulp
    return {k: np.minimum(v, 1.0) for k, v in out.items()}
