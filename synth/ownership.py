"""Beneficial ownership: local owners, foreign parents, nominees and layered restricted control."""

from __future__ import annotations

import numpy as np
import pandas as pd

from exportguard.synth import names
from exportguard.synth.common import NS_PER_DAY, hex_ids

_WESTERN_PARENTS = ("US", "GB", "JP", "DE", "FR")


def _edges(org: np.ndarray, owner: np.ndarray, otype: str | np.ndarray, country: np.ndarray,
           pct: np.ndarray) -> pd.DataFrame:  # fmt: skip
    return pd.DataFrame({"org_id": org, "owner_name": owner, "owner_type": otype,
                         "owner_country": country, "ownership_pct": np.round(pct, 2)})  # fmt: skip


def _restricted_company(rng: np.random.Generator, n: int, ent_core: np.ndarray,
                        ent_ind: np.ndarray, country: np.ndarray) -> np.ndarray:  # fmt: skip
    """Names of restricted-country parent companies; 40% resemble a listed entity."""
    pick = rng.integers(0, len(ent_core), n)
    core = np.where(rng.random(n) < 0.4, ent_core[pick],
                    names.company_cores(rng, n, np.ones(n, dtype=bool)))  # fmt: skip
    ind = np.where(rng.random(n) < 0.5, ent_ind[pick], "Technology")
    city = np.asarray(names.CN_CITIES, dtype=object)[rng.integers(0, len(names.CN_CITIES), n)]
    return np.where(country == "CN", city + " " + core + " " + ind + " Co., Ltd.",
                    core + " " + ind + " LLC").astype(object)  # fmt: skip


def make_ownership(
    rng: np.random.Generator, orgs: pd.DataFrame, archetype: np.ndarray, kind: np.ndarray,
    positive: np.ndarray, careful: np.ndarray, operator: np.ndarray, entities: pd.DataFrame,
    ent_core: np.ndarray, ent_ind: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Ownership edges for the organisations, plus the holding companies that chains go through."""
    m = len(orgs)
    org_id = orgs["org_id"].to_numpy()
    country = orgs["registered_country"].to_numpy()
    missing = rng.random(m) < np.select([kind == "university", kind == "shell"], [0.7, 0.25], 0.3)
    restricted_op = np.isin(operator, ("CN", "RU", "IR", "BY"))
    op_country = np.where(restricted_op, operator, "CN")
    parts: list[pd.DataFrame] = []

    # Ordinary organisations: one to three local owners (a few with foreign or CN investors).
    plain = ~missing & ~positive
    idx = np.flatnonzero(plain)
    n_own = rng.integers(1, 4, len(idx))
    rep = np.repeat(idx, n_own)
    share = rng.gamma(1.0, 1.0, len(rep))
    tot = np.bincount(np.repeat(np.arange(len(idx)), n_own), weights=share)
    pct = 100 * share / np.repeat(tot, n_own) * np.repeat(rng.uniform(0.85, 1.0, len(idx)), n_own)
    parts.append(
        _edges(org_id[rep], names.person_names(rng, country[rep]), "person", country[rep], pct)
    )
    parent = plain & (archetype == "legit_sg_hk_company") & (rng.random(m) < 0.3)
    pc = np.asarray(_WESTERN_PARENTS, dtype=object)[rng.integers(0, len(_WESTERN_PARENTS), m)]
    pcore = names.company_cores(rng, m, np.zeros(m, dtype=bool))
    pnames = names.legal_names(pcore, np.full(m, "Holdings", dtype=object), pc)
    parts.append(_edges(org_id[parent], pnames[parent], "company", pc[parent],
                        rng.uniform(51, 100, int(parent.sum()))))  # fmt: skip
    cn_minor = (
        plain & np.isin(country, ("SG", "HK", "MY", "AE", "US", "TW")) & (rng.random(m) < 0.08)
    )
    parts.append(_edges(org_id[cn_minor], names.person_names(rng, np.full(int(cn_minor.sum()), "CN")),
                        "person", np.full(int(cn_minor.sum()), "CN"),
                        rng.uniform(5, 45, int(cn_minor.sum()))))  # fmt: skip

    # Positives: direct, layered (company -> company -> person) or nominee control.
    bad = ~missing & positive
    mode = np.where(
        careful, rng.choice(3, m, p=[0.5, 0.3, 0.2]) + 3, rng.choice(3, m, p=[0.45, 0.35, 0.2])
    )
    nominees = names.person_names(rng, np.full(max(5, m // 200), "SG", dtype=object))
    nominee = nominees[rng.integers(0, len(nominees), m)]
    stake = np.where(careful, rng.uniform(30, 49.5, m), rng.uniform(51, 100, m))
    rname = names.person_names(rng, op_country)
    direct = bad & ((mode == 0) | (mode == 3))
    parts.append(_edges(org_id[direct], rname[direct], "person", op_country[direct], stake[direct]))
    parts.append(
        _edges(org_id[direct], nominee[direct], "person", country[direct], 100 - stake[direct])
    )
    nom = bad & ((mode == 2) | (mode == 5))  # nominee in front; the real owner keeps a small stake
    small = rng.uniform(5, 30, m)
    parts.append(_edges(org_id[nom], nominee[nom], "person", country[nom], 100 - small[nom]))
    parts.append(_edges(org_id[nom], rname[nom], "person", op_country[nom], small[nom]))

    layered = np.flatnonzero(bad & ((mode == 1) | (mode == 4)))
    h = len(layered)
    hc = np.array(["HK", "VG", "SG"], dtype=object)[rng.integers(0, 3, h)]
    hcore = names.company_cores(rng, h, np.ones(h, dtype=bool))
    hname = names.legal_names(hcore, np.full(h, "Holdings", dtype=object), hc)
    hid = hex_ids(rng, h, "org_", 12)
    top_stake = np.where(careful[layered], rng.uniform(40, 49.5, h), rng.uniform(51, 100, h))
    first = rng.uniform(80, 100, h)
    parts.append(_edges(org_id[layered], hname, "company", hc, first))
    is_person = rng.random(h) < 0.5
    parent_name = np.where(is_person, names.person_names(rng, op_country[layered]),
                           _restricted_company(rng, h, ent_core, ent_ind, op_country[layered]))  # fmt: skip
    ptype = np.where(is_person, "person", "company")
    parts.append(_edges(hid, parent_name, ptype, op_country[layered], top_stake))
    parts.append(_edges(hid, names.person_names(rng, hc), "person", hc, 100 - top_stake))
    parent_inc = orgs["incorporated_at"].to_numpy(np.int64)[layered]
    known = parent_inc != np.iinfo(np.int64).min
    h_inc = np.where(known, parent_inc - (rng.uniform(30, 2000, h) * NS_PER_DAY).astype(np.int64),
                     np.iinfo(np.int64).min)  # fmt: skip
    holdings = pd.DataFrame({"org_id": hid, "legal_name": hname, "registered_country": hc,
                             "incorporated_at": h_inc,
                             "registered_address": names.addresses(rng, hc)})  # fmt: skip
    own = pd.concat([p for p in parts if len(p)], ignore_index=True)
    own["ownership_pct"] = own["ownership_pct"].clip(0.0, 100.0)
    return own.sample(frac=1.0, random_state=rng.integers(2**31)).reset_index(drop=True), holdings
