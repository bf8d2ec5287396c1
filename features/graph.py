"""Graph links: accounts run by one operator share devices, payment instruments, networks, addresses.

Two accounts are linked when, before as_of, they used the same console device
(logins.device_id), the same payment instrument (payments.instrument_id), the same network
prefix (api_usage.ip_prefix) or their organisations share a registered address. A prefix
seen on more than `Policy.max_prefix_accounts` accounts (default 10) is ignored from the moment
it is: cloud, NAT and mobile-carrier prefixes are shared by strangers. (With 25, hosting and
VPN prefixes chained a quarter of a 100k world into one component.) Each link is dated by
when both sides had used the shared thing, so a link formed at or after as_of never counts.

The links (first-seen account-entity pairs) and the shared device and instrument counts
are SQL (`features.sql`); the components (how many accounts are linked, how many of them
were confirmed positive before as_of) are answered here, offline: requests sorted by
time, links added in first-seen order with union-find, and a full rebuild (scipy connected components) whenever a prefix stops
counting or many links arrive at once. Entity nodes (devices, instruments, prefixes,
addresses) sit in the graph as hubs, so no account-pair list is ever built.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from exportguard.features.components import OfflineComponents
from exportguard.features.context import NAT, Context, SortedGroups, floats, index_codes, to_ns

log = logging.getLogger(__name__)


def first_seen(
    acc: np.ndarray, ent: np.ndarray, time: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (account, entity) pairs with the first time seen, among rows before `limit`,
    keeping only entities seen on at least two accounts (the only ones that link)."""
    ok = (acc >= 0) & (ent >= 0) & (time != NAT) & (time < limit)
    if not ok.any():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    base = int(ent.max()) + 1
    groups = SortedGroups(acc[ok] * base + ent[ok])
    times = time[ok] if groups.order is None else time[ok][groups.order]
    p_time = np.minimum.reduceat(times, groups.starts)
    p_acc, p_ent = groups.keys // base, groups.keys % base
    n_accounts = np.bincount(p_ent, minlength=base)
    keep = n_accounts[p_ent] >= 2
    return p_acc[keep], p_ent[keep], p_time[keep]


def _prefix_deaths(p_ent: np.ndarray, p_time: np.ndarray, cap: int) -> np.ndarray:
    """Per prefix: first-seen time of its (cap+1)-th account (it stops linking after it)."""
    n_ent = int(p_ent.max()) + 1 if len(p_ent) else 0
    death = np.full(n_ent, np.iinfo(np.int64).max, dtype=np.int64)
    if len(p_ent) == 0:
        return death
    order = np.lexsort((p_time, p_ent))
    ents, times = p_ent[order], p_time[order]
    start = np.searchsorted(ents, np.arange(n_ent), side="left")
    rank = np.arange(len(ents)) - start[ents]
    over = rank == cap
    death[ents[over]] = times[over]
    return death


def _address_pairs(ctx: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(account, address) links dated when both the account and its organisation existed."""
    t = ctx.tables
    empty = np.zeros(0, dtype=np.int64)
    if t.organizations is None:
        return empty, empty, empty
    orgs = t.organizations
    acc_org = index_codes(t.accounts["org_id"], pd.Index(orgs["org_id"]))
    addr, _ = ctx.codes("organizations", "registered_address")
    inc = to_ns(orgs["incorporated_at"])
    has = np.flatnonzero((acc_org >= 0) & (addr[np.maximum(acc_org, 0)] >= 0))
    org = acc_org[has]
    time = np.maximum(ctx.created[has], inc[org])  # NaT (min int64) -> the account's sign-up
    return first_seen(has, addr[org], time, int(ctx.req_asof.max(initial=NAT)))


Links = tuple[np.ndarray, np.ndarray, np.ndarray]  # (account, entity, first seen ns)


def component_features(ctx: Context, links: dict[str, Links]) -> dict[str, np.ndarray]:
    """Component size and confirmed positives linked, given the device, instrument and
    prefix links the relational engine extracts (`features.sql.graph_links`); address links
    come from the organisations, which are small."""
    prefixes = links["prefix"]
    graph = OfflineComponents(ctx.n_acc)
    for kind, (p_acc, p_ent, p_time) in (
        ("device", links["device"]),
        ("instrument", links["instrument"]),
        ("address", _address_pairs(ctx)),
    ):
        graph.add_links(kind, p_acc, p_ent, p_time)
    deaths = _prefix_deaths(prefixes[1], prefixes[2], ctx.max_prefix_accounts)
    graph.add_links("prefix", *prefixes, expires=deaths[prefixes[1]] if len(prefixes[1]) else None)

    lab = ctx.tables.labels
    l_acc = index_codes(lab["account_id"], ctx.account_ids)
    positive = (floats(lab["label"]) == 1) & (l_acc >= 0)
    first_positive = np.full(ctx.n_acc, np.iinfo(np.int64).max, dtype=np.int64)
    l_time = to_ns(lab["labelled_at"])
    positive &= l_time != NAT
    np.minimum.at(first_positive, l_acc[positive], l_time[positive])

    size, linked_pos = graph.answer(ctx.req_acc, ctx.req_asof, first_positive)
    return {"linked_component_size": size, "linked_confirmed_positives": linked_pos}
