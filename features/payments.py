"""Payments: who pays, from where, and how (BIS 2024 payer-location flag, FinCEN 2023).

Shares are of payment attempts before as_of (all statuses), except the prepaid/crypto share,
which is of the amount actually paid (attempts that did not fail). Issuer shares count only
attempts with a known issuer country. No attempts -> NaN shares.
"""

from __future__ import annotations

import numpy as np

from exportguard.features import agg
from exportguard.features.context import NS_DAY, Context

COVER_METHODS = ("prepaid_card", "crypto")
FAILED = ("failed",)
REVERSED = ("disputed", "refunded")


def _flags(ctx: Context, column: str, values: tuple[str, ...]) -> np.ndarray:
    """Per payment row: is the column's value one of `values`?"""
    codes, uniques = ctx.codes("payments", column)
    lookup = np.array([str(u).strip().lower() in values for u in uniques] + [False])
    return lookup[codes]


def payment_features(ctx: Context) -> dict[str, np.ndarray]:
    """Payments family, one value per request."""
    n, p, j = ctx.n_req, ctx.payments, ctx.payments_join
    restricted, intermediary = ctx.restricted(), ctx.intermediary()
    issuer = p["issuer"][j.rows]
    known = issuer >= 0
    declared = ctx.declared[ctx.req_acc][j.req]
    billing = ctx.billing[ctx.req_acc][j.req]
    foreign = known & (issuer != declared) & ((billing < 0) | (issuer != billing))
    attempts = agg.total(j.req, None, n)
    with_issuer = agg.total(j.req[known], None, n)

    failed = _flags(ctx, "status", FAILED)[j.rows]
    reversed_ = _flags(ctx, "status", REVERSED)[j.rows]
    cover = _flags(ctx, "method", COVER_METHODS)[j.rows]
    amount = np.nan_to_num(p["amount"][j.rows])
    paid = ~failed

    instruments, _ = ctx.codes("payments", "instrument_id")
    j90 = j.within(90 * NS_DAY)
    return {
        "issuer_country_mismatch_share": agg.share(agg.total(j.req[foreign], None, n), with_issuer),
        "restricted_issuer_share": agg.share(
            agg.total(j.req[known & restricted[issuer]], None, n), with_issuer
        ),
        "intermediary_issuer_share": agg.share(
            agg.total(j.req[known & intermediary[issuer]], None, n), with_issuer
        ),
        "prepaid_crypto_amount_share": agg.share(
            agg.total(j.req[paid & cover], amount[paid & cover], n),
            agg.total(j.req[paid], amount[paid], n),
        ),
        "failed_payment_rate": agg.share(agg.total(j.req[failed], None, n), attempts),
        "disputed_refunded_rate": agg.share(agg.total(j.req[reversed_], None, n), attempts),
        "distinct_instruments_90d": agg.distinct(j90.req, instruments[j90.rows], n),
    }
