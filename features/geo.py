"""Traffic geography: where API traffic and console logins come from, against the declared country.

Red flags: traffic from unsupported regions, transshipment through intermediary
jurisdictions, proxies and data-centre networks, a location that differs from the declared
one (BIS 2024, FinCEN IP-address flag, providers' published enforcement). Shares are of
requests; rows without a geolocated country are left out of country shares (unknown is not
"elsewhere"), and a share with no traffic in its window is NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from exportguard.features import agg
from exportguard.features.context import NS_DAY, Context, factorize

HOSTING = ("hosting",)
ANONYMISING = ("vpn_proxy", "tor")


def _network_flags(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Per usage row: hosting network?, VPN/proxy or Tor?"""
    codes, uniques = factorize(ctx.tables.api_usage["network_type"])
    norm = [str(u).strip().lower() for u in uniques]
    hosting = np.array([u in HOSTING for u in norm] + [False])
    anon = np.array([u in ANONYMISING for u in norm] + [False])
    return hosting[codes], anon[codes]


def _js_divergence(
    pr_a: np.ndarray, key_a: np.ndarray, m_a: np.ndarray, pr_b: np.ndarray, key_b, m_b, n: int
) -> np.ndarray:
    """Jensen-Shannon divergence (base 2, 0-1) between two per-request distributions."""
    a = pd.DataFrame(
        {"r": pr_a, "k": key_a, "p": m_a / np.maximum(agg.total(pr_a, m_a, n), 1e-300)[pr_a]}
    )
    b = pd.DataFrame(
        {"r": pr_b, "k": key_b, "q": m_b / np.maximum(agg.total(pr_b, m_b, n), 1e-300)[pr_b]}
    )
    both = a.merge(b, on=["r", "k"], how="outer").fillna({"p": 0.0, "q": 0.0})
    p, q = both["p"].to_numpy(), both["q"].to_numpy()
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = 0.5 * np.where(p > 0, p * np.log2(p / m), 0.0) + 0.5 * np.where(
            q > 0, q * np.log2(q / m), 0.0
        )
    out = agg.total(both["r"].to_numpy(), term, n)
    has_a = agg.total(pr_a, m_a, n) > 0
    has_b = agg.total(pr_b, m_b, n) > 0
    out[~(has_a & has_b)] = np.nan
    return np.clip(out, 0.0, 1.0)


def geo_features(ctx: Context) -> dict[str, np.ndarray]:
    """Traffic-geography family, one value per request."""
    n, u = ctx.n_req, ctx.usage
    hosting_row, anon_row = _network_flags(ctx)
    restricted, intermediary = ctx.restricted(), ctx.intermediary()
    j = ctx.usage_join
    country, reqs = u["country"][j.rows], u["requests"][j.rows]
    known = country >= 0
    w30 = j.age <= 30 * NS_DAY
    declared = ctx.declared[ctx.req_acc][j.req]

    def req_sum(mask: np.ndarray) -> np.ndarray:
        return agg.total(j.req[mask], reqs[mask], n)

    known_30, known_all = req_sum(known & w30), req_sum(known)
    all_30 = req_sum(w30)
    out = {
        "restricted_traffic_share_30d": agg.share(req_sum(w30 & restricted[country]), known_30),
        "restricted_traffic_share_all": agg.share(req_sum(restricted[country]), known_all),
        "intermediary_traffic_share_30d": agg.share(req_sum(w30 & intermediary[country]), known_30),
        "hosting_traffic_share_30d": agg.share(req_sum(w30 & hosting_row[j.rows]), all_30),
        "vpn_tor_traffic_share_30d": agg.share(req_sum(w30 & anon_row[j.rows]), all_30),
        "declared_country_mismatch_30d": agg.share(
            req_sum(w30 & known & (country != declared)), known_30
        ),
    }
    sel = known & w30
    pr, _, sums = agg.pair_sums(j.req[sel], country[sel], reqs[sel])
    out["traffic_country_entropy_30d"] = agg.entropy_bits(pr, sums, n)
    asn_codes, _ = ctx.codes("api_usage", "asn")
    out["distinct_asns_30d"] = agg.distinct(j.req[w30], asn_codes[j.rows][w30], n)

    lg, jl = ctx.logins, ctx.logins_join
    l_country = lg["country"][jl.rows]
    l_known = l_country >= 0
    restricted = ctx.restricted()
    out["login_restricted_share"] = agg.share(
        agg.total(jl.req[l_known & restricted[l_country]], None, n),
        agg.total(jl.req[l_known], None, n),
    )
    pa, ka, ma = agg.pair_sums(jl.req[l_known], l_country[l_known], None)
    pb, kb, mb = agg.pair_sums(j.req[known], country[known], reqs[known])
    out["console_api_country_divergence"] = _js_divergence(pa, ka, ma, pb, kb, mb, n)

    signup = ctx.signup_country[ctx.req_acc]
    out["signup_ip_restricted"] = np.where(signup >= 0, restricted[signup], np.nan)
    billing, decl = ctx.billing[ctx.req_acc], ctx.declared[ctx.req_acc]
    out["billing_declared_mismatch"] = np.where(billing >= 0, billing != decl, np.nan)
    return out
