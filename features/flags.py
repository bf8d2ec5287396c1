"""Red flags the first feature list missed (each in its domain family of the registry).

- Traffic through networks of operators headquartered in restricted countries, by ASN
  (policy `restricted_operator_asns`): a relay abroad still shows its home carrier's ASN
  when the operator resells transit or roaming exits.
- Residential and mobile exits in intermediary countries: residential-proxy relays put
  their exits in Hong Kong or Singapore homes and phones, not data centres.
- VPN, Tor or hosting at console login, as distinct from API traffic: a person hiding
  where they sit, while the relay's API traffic may look clean.
- Payment cadence and amounts: round amounts (whole multiples of 50 USD, top-ups bought
  as vouchers) and the prepaid-card share by count of payments, not amount.
- Growth of API keys and of end users: the last 30 days against the 30 days before,
  log ratios (a relay onboarding customers adds keys and end users fast).
"""

from __future__ import annotations

import numpy as np

from exportguard.features import agg
from exportguard.features.context import NS_DAY, Context, floats

WINDOW_NS = 90 * NS_DAY
GROWTH_NS = 30 * NS_DAY
RESIDENTIAL = ("residential", "mobile")
ANONYMISING_LOGIN = ("vpn_proxy", "tor", "hosting")
ROUND_USD = 50.0


def _flags(ctx: Context, table: str, column: str, values: tuple[str, ...]) -> np.ndarray:
    codes, uniques = ctx.codes(table, column)
    lookup = np.array([str(u).strip().lower() in values for u in uniques] + [False])
    return lookup[codes]


def _growth(now: np.ndarray, before: np.ndarray) -> np.ndarray:
    out = np.log1p(now) - np.log1p(before)
    out[(now <= 0) & (before <= 0)] = np.nan
    return out


def flag_features(ctx: Context) -> dict[str, np.ndarray]:
    """The added red flags, one value per request."""
    n, u, pol = ctx.n_req, ctx.usage, ctx.policy
    j = ctx.usage_join.within(WINDOW_NS)
    reqs = u["requests"][j.rows]
    asn = floats(ctx.tables.api_usage["asn"])[j.rows]
    operator = np.isin(asn, np.asarray(pol.restricted_operator_asns, dtype=float))
    country = u["country"][j.rows]
    known = country >= 0
    residential = _flags(ctx, "api_usage", "network_type", RESIDENTIAL)[j.rows]
    inter_res = known & ctx.intermediary()[country] & residential
    all_reqs = agg.total(j.req, reqs, n)
    known_reqs = agg.total(j.req[known], reqs[known], n)

    jl = ctx.logins_join.within(WINDOW_NS)
    anon_login = _flags(ctx, "logins", "network_type", ANONYMISING_LOGIN)[jl.rows]

    jp = ctx.payments_join
    amount = ctx.payments["amount"][jp.rows]
    has_amount = ~np.isnan(amount) & (amount > 0)
    round_ = has_amount & (np.mod(amount, ROUND_USD) == 0)
    prepaid = _flags(ctx, "payments", "method", ("prepaid_card",))[jp.rows]
    attempts = agg.total(jp.req, None, n)

    ju = ctx.usage_join.within(2 * GROWTH_NS)
    recent = ju.age <= GROWTH_NS
    key_codes, _ = ctx.codes("api_usage", "api_key_id")
    keys = key_codes[ju.rows]
    end_users = u["end_users"][ju.rows]
    shares = {
        "restricted_operator_traffic_share_90d": agg.share(
            agg.total(j.req[operator], reqs[operator], n), all_reqs
        ),
        "intermediary_residential_share_90d": agg.share(
            agg.total(j.req[inter_res], reqs[inter_res], n), known_reqs
        ),
        "login_anonymised_share_90d": agg.share(
            agg.total(jl.req[anon_login], None, n), agg.total(jl.req, None, n)
        ),
        "round_amount_payment_share": agg.share(
            agg.total(jp.req[round_], None, n), agg.total(jp.req[has_amount], None, n)
        ),
        "prepaid_payment_count_share": agg.share(agg.total(jp.req[prepaid], None, n), attempts),
    }
    return {
        **{k: np.minimum(v, 1.0) for k, v in shares.items()},
        "api_key_growth_30d": _growth(
            agg.distinct(ju.req[recent], keys[recent], n),
            agg.distinct(ju.req[~recent], keys[~recent], n),
        ),
        "end_user_growth_30d": _growth(
            agg.total(ju.req[recent], end_users[recent], n),
            agg.total(ju.req[~recent], end_users[~recent], n),
        ),
    }
