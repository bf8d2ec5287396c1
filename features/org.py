"""Organisation: young shells in intermediary jurisdictions, restricted owners, listed names.

Red flags: recent incorporation and registered-agent addresses (FinCEN 2023, FATF),
ownership by restricted-region parties (OFAC FAQ 401, providers' 2025 subsidiary rule),
resemblance to a listed entity (BIS red flag #1), an organisation on a free e-mail domain.
An organisation incorporated at or after as_of is unknown at as_of; an account without an
organisation, or with the optional table absent, has NaN organisation features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from exportguard.features.context import NAT, NS_DAY, Context, factorize, index_codes, to_ns
from exportguard.features.names import best_similarity
from exportguard.features.ownership import OwnershipGraph

ORG_FEATURES = (
    "incorporation_age_at_signup_days",
    "incorporated_in_intermediary",
    "restricted_ownership_effective",
    "restricted_ownership_max_direct",
    "orgs_at_registered_address",
    "restricted_entity_name_similarity",
)


def _freemail(ctx: Context) -> np.ndarray:
    acc = ctx.tables.accounts
    free = {d.lower() for d in ctx.policy.freemail_domains}
    d_codes, d_uniques = factorize(acc["email_domain"])
    is_free = np.array([str(d).strip().lower() in free for d in d_uniques] + [False])
    t_codes, t_uniques = factorize(acc["account_type"])
    is_org = np.array([str(t).strip().lower() == "organization" for t in t_uniques] + [False])
    return (is_free[d_codes] & is_org[t_codes]).astype(np.float64)[ctx.req_acc]


def _others_at_address(
    addr: np.ndarray, inc: np.ndarray, req_org: np.ndarray, req_asof: np.ndarray
) -> np.ndarray:
    """Organisations known at as_of at the same address as each request's organisation, minus it."""
    out = np.full(len(req_org), np.nan)
    has = req_org >= 0
    if not has.any():
        return out
    _, ranks = np.unique(np.concatenate([inc, req_asof[has]]), return_inverse=True)
    org_rank, req_rank = ranks[: len(inc)], ranks[len(inc) :]
    base = int(ranks.max()) + 2
    keys = np.sort(addr.astype(np.int64) * base + org_rank)
    a = addr[req_org[has]].astype(np.int64) * base
    # orgs at the address dated strictly before as_of (rank of NaT is the lowest)
    count = np.searchsorted(keys, a + req_rank, side="left") - np.searchsorted(keys, a, "left")
    out[has] = count - 1
    return out


def org_features(ctx: Context) -> dict[str, np.ndarray]:
    """Organisation family, one value per request."""
    n, t = ctx.n_req, ctx.tables
    out = {name: np.full(n, np.nan) for name in ORG_FEATURES}
    out["freemail_organization"] = _freemail(ctx)
    if t.organizations is None:
        return out
    orgs = t.organizations
    org_index = pd.Index(orgs["org_id"])
    inc = to_ns(orgs["incorporated_at"])
    acc_org = index_codes(t.accounts["org_id"], org_index)
    req_org = acc_org[ctx.req_acc]
    has = req_org >= 0
    org_inc = np.where(has, inc[np.maximum(req_org, 0)], NAT)
    has &= (org_inc == NAT) | (org_inc < ctx.req_asof)
    req_org = np.where(has, req_org, -1)

    dated = has & (org_inc != NAT)
    created = ctx.created[ctx.req_acc]
    out["incorporation_age_at_signup_days"][dated] = (created[dated] - org_inc[dated]) / NS_DAY
    reg = ctx.vocab.encode(orgs["registered_country"])
    out["incorporated_in_intermediary"][has] = ctx.intermediary()[reg[req_org[has]]]
    addr, _ = factorize(orgs["registered_address"])
    addr = np.where(addr >= 0, addr, np.arange(len(addr)) + addr.max(initial=0) + 1)
    out["orgs_at_registered_address"] = _others_at_address(addr, inc, req_org, ctx.req_asof)

    names = orgs["legal_name"]
    owner_of = np.arange(len(orgs))
    if t.ownership is not None:
        graph = OwnershipGraph(
            orgs, org_index, inc, t.ownership, ctx.vocab, ctx.policy.restricted_countries
        )
        out["restricted_ownership_effective"] = graph.effective(req_org, ctx.req_asof)
        out["restricted_ownership_max_direct"] = graph.direct(req_org)
        ok = graph.owned >= 0
        # an owner given by org_id is screened under that organisation's legal name
        owner_names = t.ownership["owner_name"].to_numpy(dtype=object, copy=True)
        by_id = index_codes(t.ownership["owner_name"], org_index) >= 0
        owner_names[by_id] = orgs["legal_name"].astype(object).to_numpy()[graph.target[by_id]]
        names = pd.concat([names, pd.Series(owner_names[ok])], ignore_index=True)
        owner_of = np.concatenate([owner_of, graph.owned[ok]])
    if t.restricted_entities is not None:
        scores = best_similarity(names, t.restricted_entities["name"])
        per_org = np.zeros(len(orgs))
        np.maximum.at(per_org, owner_of, scores)
        out["restricted_entity_name_similarity"][has] = per_org[req_org[has]]
    return out
