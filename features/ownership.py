"""Effective restricted ownership through ownership chains, with the OFAC 50% aggregation rule.

An owner of type `company` is resolved to an organisation when its name equals an `org_id`
or, after normalisation, an organisation's `legal_name`; stakes then multiply along the
chain. A party counts as restricted when its country is restricted (for a company, also
its registered country). OFAC's 50% rule (FAQ 401): an entity owned 50% or more in
aggregate by restricted parties is itself restricted and passes its stake on in full.
The result is capped at 1.

Ownership has no dates: it is the current snapshot (documented in the README). The
organisations a chain can pass through must be known at as_of (incorporated before it, or
of unknown date); an owner company not yet incorporated is treated as an unresolved company.
Requests are grouped by which intermediate companies they may use ("epochs"), so many
as_of times need only as many fixed-point solves as there are distinct epochs.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from exportguard.features.context import NAT, Vocab, factorize, floats, index_codes
from exportguard.features.names import normalise_name

log = logging.getLogger(__name__)

MAX_CHAIN_DEPTH = 12
OFAC_THRESHOLD = 0.5


class OwnershipGraph:
    """Ownership edges in integer form, resolved once per computation."""

    def __init__(
        self,
        orgs: pd.DataFrame,
        org_index: pd.Index,
        org_inc: np.ndarray,
        ownership: pd.DataFrame,
        vocab: Vocab,
        restricted_countries: tuple[str, ...],
    ) -> None:
        self.n_org = len(orgs)
        self.owned = index_codes(ownership["org_id"], org_index)
        unknown = int((self.owned < 0).sum())
        if unknown:
            log.warning(
                "ownership: %d row(s) name an org_id not in organizations; ignored", unknown
            )
        self.pct = np.clip(np.nan_to_num(floats(ownership["ownership_pct"])) / 100.0, 0.0, 1.0)
        owner_country = vocab.encode(ownership["owner_country"])
        reg_country = vocab.encode(orgs["registered_country"])
        restricted = vocab.mask(restricted_countries)
        self.edge_restricted = restricted[owner_country]
        self.org_restricted = restricted[reg_country]
        type_codes, type_uniques = factorize(ownership["owner_type"])
        is_company = np.array([str(t).strip().lower() == "company" for t in type_uniques] + [False])
        self.target = self._resolve(orgs, org_index, ownership["owner_name"])
        self.target[~is_company[type_codes]] = -1
        self.org_inc = org_inc
        targets = np.unique(self.target[self.target >= 0])
        inc = org_inc[targets]
        self.epoch_times = np.sort(inc[inc != NAT])
        self.max_direct = np.full(self.n_org, -np.inf)
        ok = self.owned >= 0
        np.maximum.at(
            self.max_direct, self.owned[ok], np.where(self.edge_restricted, self.pct, 0.0)[ok]
        )
        self.has_edges = np.isfinite(self.max_direct)
        self.max_direct[~self.has_edges] = np.nan

    @staticmethod
    def _resolve(orgs: pd.DataFrame, org_index: pd.Index, owner_name: pd.Series) -> np.ndarray:
        """Owner name -> organisation position (by org_id, else by normalised legal name)."""
        by_id = index_codes(owner_name, org_index)
        names = orgs["legal_name"].map(normalise_name)
        first = pd.Series(np.arange(len(orgs)), index=names.to_numpy())
        first = first[~first.index.duplicated(keep="first") & (first.index != "")]
        by_name = index_codes(owner_name.map(normalise_name), pd.Index(first.index))
        by_name = np.where(by_name >= 0, first.to_numpy()[np.maximum(by_name, 0)], -1)
        return np.where(by_id >= 0, by_id, by_name)

    def solve(self, known_targets: np.ndarray) -> np.ndarray:
        """Restricted share of every organisation, using only chain links to known companies."""
        ok = self.owned >= 0
        owned, pct, tgt = self.owned[ok], self.pct[ok], self.target[ok]
        direct = self.edge_restricted[ok]
        linked = (tgt >= 0) & known_targets[np.maximum(tgt, 0)]
        share = np.zeros(self.n_org)
        for _ in range(MAX_CHAIN_DEPTH):
            upstream = share[np.maximum(tgt, 0)]
            passed = np.where(
                (upstream >= OFAC_THRESHOLD) | self.org_restricted[np.maximum(tgt, 0)],
                1.0,
                upstream,
            )
            r = np.where(direct, 1.0, np.where(linked, passed, 0.0))
            new = np.minimum(1.0, np.bincount(owned, weights=pct * r, minlength=self.n_org))
            if np.allclose(new, share, atol=1e-12):
                break
            share = new
        return new

    def effective(self, req_org: np.ndarray, req_asof: np.ndarray) -> np.ndarray:
        """Effective restricted share per request (NaN: no organisation or no ownership rows)."""
        out = np.full(len(req_org), np.nan)
        has = req_org >= 0
        has[has] = self.has_edges[req_org[has]]
        epoch = np.searchsorted(self.epoch_times, req_asof, side="left")
        for e in np.unique(epoch[has]):
            known = self.org_inc == NAT
            if e > 0:  # the e earliest-incorporated intermediate companies exist by now
                known |= self.org_inc <= self.epoch_times[e - 1]
            sel = has & (epoch == e)
            out[sel] = self.solve(known)[req_org[sel]]
        return out
