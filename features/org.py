"""Organisation: restricted owners through ownership chains, names resembling listed entities.

Red flags: ownership by restricted-region parties through chains of companies (OFAC FAQ
401's 50% rule, providers' 2025 subsidiary rule) and resemblance to a listed entity (BIS red
flag #1). The family's lookups and counts (recent incorporation, registration in an
intermediary jurisdiction, registered-agent addresses, the largest direct stake, free-mail
organisations) are SQL (`features.sql.ORG`). An organisation incorporated at or after as_of
is unknown at as_of; an account without an organisation, or with the optional table
absent, has NaN organisation features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from exportguard.features.context import NAT, Context, index_codes, to_ns
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

#: what this module computes; the other organisation features are lookups and counts
#: written once as SQL (`features.sql.ORG`)
CHAIN_FEATURES = ("restricted_ownership_effective", "restricted_entity_name_similarity")


def org_chain_features(ctx: Context) -> dict[str, np.ndarray]:
    """Effective restricted ownership and name screening, one value per request (NaN: no
    organisation known at as_of, or the table they need is absent)."""
    n, t = ctx.n_req, ctx.tables
    out = {name: np.full(n, np.nan) for name in CHAIN_FEATURES}
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

    names = orgs["legal_name"]
    owner_of = np.arange(len(orgs))
    if t.ownership is not None:
        graph = OwnershipGraph(
            orgs, org_index, inc, t.ownership, ctx.vocab, ctx.policy.restricted_countries
        )
        out["restricted_ownership_effective"] = graph.effective(req_org, ctx.req_asof)
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
