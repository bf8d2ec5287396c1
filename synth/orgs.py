"""Organisations, beneficial ownership (with chains and nominees) and the screening list."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from exportguard.synth import geo, names
from exportguard.synth.archetypes import SPECS
from exportguard.synth.common import NS_PER_DAY, hex_ids
from exportguard.synth.ownership import make_ownership
from exportguard.synth.population import Population

_LISTS = {"BIS Entity List": 5, "OFAC SDN": 3, "BIS MEU List": 1, "BIS Unverified List": 1}
_EDU_TLD = {"US": ".edu", "GB": ".ac.uk", "SG": ".edu.sg", "HK": ".edu.hk", "AU": ".edu.au",
            "JP": ".ac.jp", "CA": ".ca", "DE": ".de"}  # fmt: skip


@dataclass
class OrgWorld:
    org_of_account: np.ndarray  # org_id or None per account
    domain_of_account: np.ndarray  # the organisation's own e-mail domain, or None
    organizations: pd.DataFrame
    ownership: pd.DataFrame
    restricted_entities: pd.DataFrame


def _screening_list(
    rng: np.random.Generator, n: int
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Listed entities (with a few aliases); returns the table and the cores/industries used."""
    core = names.company_cores(rng, n, np.ones(n, dtype=bool))
    industry = np.asarray(names.INDUSTRY, dtype=object)[rng.integers(0, len(names.INDUSTRY), n)]
    country = np.array(["CN", "RU", "IR"], dtype=object)[rng.choice(3, n, p=[0.7, 0.2, 0.1])]
    city = np.asarray(names.CN_CITIES, dtype=object)[rng.integers(0, len(names.CN_CITIES), n)]
    ru = np.asarray(names.RUSSIAN, dtype=object)[rng.integers(0, len(names.RUSSIAN), n)]
    fa = np.asarray(names.PERSIAN, dtype=object)[rng.integers(0, len(names.PERSIAN), n)]
    name = np.where(country == "CN", city + " " + core + " " + industry + " Co., Ltd.",
                    np.where(country == "RU", ru + core.astype(str) + " " + industry + " LLC",
                             fa + " " + core + " " + industry + " Co."))  # fmt: skip
    lists = np.array(list(_LISTS), dtype=object)
    lst = lists[rng.choice(len(lists), n, p=np.array(list(_LISTS.values())) / 10)]
    alias = rng.random(n) < 0.2
    rows = pd.DataFrame({"name": name, "country": country, "list_name": lst})
    alias_rows = pd.DataFrame({"name": core[alias] + " " + industry[alias] + " (HK) Limited",
                               "country": "HK", "list_name": lst[alias]})  # fmt: skip
    table = pd.concat([rows, alias_rows], ignore_index=True)
    table.loc[rng.random(len(table)) < 0.05, "country"] = None
    return (
        table.sample(frac=1.0, random_state=rng.integers(2**31)).reset_index(drop=True),
        core,
        industry,
    )


def make_orgs(rng: np.random.Generator, pop: Population) -> OrgWorld:
    """One organisation per organisation account (legit multi-account orgs share one)."""
    kind = np.array([s.org_kind for s in SPECS], dtype=object)[pop.spec]
    name = np.array([s.name for s in SPECS], dtype=object)[pop.spec]
    positive = pop.is_positive()
    key = np.where(positive, np.arange(pop.n), pop.ring)
    acc = np.flatnonzero(pop.is_org)
    keys, lead_pos, inverse = np.unique(key[acc], return_index=True, return_inverse=True)
    lead = acc[lead_pos]
    m = len(lead)
    org_ids = hex_ids(rng, m, "org_", 12)
    org_of_account = np.full(pop.n, None, dtype=object)
    org_of_account[acc] = org_ids[inverse]

    entities, ent_core, ent_ind = _screening_list(rng, max(150, pop.n // 40))
    k, nm, pos, careful = kind[lead], name[lead], positive[lead], pop.careful[lead]
    country = pop.declared[lead].copy()
    chinese_p = np.select([pos, nm == "legit_sg_hk_company", nm == "legit_channel_partner"],
                          [0.85, 0.5, 0.1], 0.05)  # fmt: skip
    chinese = rng.random(m) < chinese_p
    core = names.company_cores(rng, m, chinese)
    industry = np.asarray(names.INDUSTRY, dtype=object)[rng.integers(0, len(names.INDUSTRY), m)]
    # Some positives' organisations resemble listed entities; a few innocents do too.
    resemble = (pos & ~careful & (rng.random(m) < 0.3)) | (~pos & chinese & (rng.random(m) < 0.06))
    pick = rng.integers(0, len(ent_core), m)
    core[resemble] = ent_core[pick[resemble]]
    industry[resemble & pos] = ent_ind[pick[resemble & pos]]
    legal = names.legal_names(core, industry, country)
    legal[resemble & pos] = (names.fuzzy_variant(rng, core, industry)[resemble & pos] + " "
                             + np.array([names.SUFFIX.get(c, "Ltd.") for c in country[resemble & pos]],
                                        dtype=object))  # fmt: skip
    uni = k == "university"
    legal[uni & ~pos] = "University of " + core[uni & ~pos]
    legal[uni & pos] = (
        core[uni & pos]
        + " Research Institute "
        + np.array([names.SUFFIX.get(c, "Ltd.") for c in country[uni & pos]], dtype=object)
    )

    created = pop.created_ns[lead]
    age_days = np.select(
        [(k == "shell") & ~careful, (k == "shell") & careful, uni & pos, uni, nm == "startup_fast_growth", pos],
        [np.exp(rng.normal(np.log(250), 0.8, m)), rng.uniform(300, 2500, m), rng.uniform(100, 3000, m),
         rng.uniform(20, 120, m) * 365, rng.uniform(60, 1100, m), rng.uniform(30, 900, m)],
        np.exp(rng.normal(np.log(6 * 365), 0.9, m)),
    )  # fmt: skip
    young = (nm == "legit_sg_hk_company") & (rng.random(m) < 0.35)  # new regional subsidiaries
    age_days = np.where(young, rng.uniform(60, 900, m), age_days)
    incorporated = (created - np.minimum(age_days, 120 * 365) * NS_PER_DAY).astype(np.int64)
    inc_null = rng.random(m) < 0.08

    address = names.addresses(rng, country)
    hub = np.isin(country, ("SG", "HK", "MY", "AE"))
    pool_size = max(4, int(hub.sum()) // 8)
    pool = names.addresses(rng, np.array(["SG", "HK", "MY", "AE"] * pool_size, dtype=object))
    use_pool = hub & (
        rng.random(m) < np.select([k == "shell", nm == "legit_sg_hk_company"], [0.75, 0.3], 0.1)
    )
    hub_index = {c: j for j, c in enumerate(("SG", "HK", "MY", "AE"))}
    ci = np.array([hub_index[c] for c in country[use_pool]], dtype=np.int64)
    address[use_pool] = pool[rng.integers(0, pool_size, len(ci)) * 4 + ci]
    ring_lead = pop.ring[lead]
    for r in np.unique(ring_lead[pos & (k == "shell")]):  # a farm's shells share an address
        g = np.flatnonzero(ring_lead == r)
        if len(g) > 1 and rng.random() < 0.7:
            address[g] = address[g[0]]

    tld = np.array([_EDU_TLD.get(c, ".edu") if u else geo.TLD.get(c, ".com")
                    for c, u in zip(country, uni, strict=True)], dtype=object)  # fmt: skip
    domain = np.char.lower(core.astype(str)).astype(object) + tld
    domain_of_account = np.full(pop.n, None, dtype=object)
    domain_of_account[acc] = domain[inverse]

    orgs = pd.DataFrame({"org_id": org_ids, "legal_name": legal, "registered_country": country,
                         "incorporated_at": np.where(inc_null, np.iinfo(np.int64).min, incorporated),
                         "registered_address": address})  # fmt: skip
    ownership, holdings = make_ownership(rng, orgs, nm, k, pos, careful, pop.operator[lead],
                                         entities, ent_core, ent_ind)  # fmt: skip
    orgs = pd.concat([orgs, holdings], ignore_index=True)
    return OrgWorld(org_of_account, domain_of_account, orgs, ownership, entities)
