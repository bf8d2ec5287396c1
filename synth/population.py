"""The account population: archetypes, sign-up times, careful evaders, farms and org groups."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd

from exportguard.synth import geo
from exportguard.synth.archetypes import BY_NAME, CAREFUL_SHARE, SPECS
from exportguard.synth.common import NS_PER_DAY, choice
from exportguard.synth.scenario import SCENARIOS, Evasion, Scenario, draw_evasion

#: Archetypes whose organisations sometimes run several accounts (an innocent "farm").
_MULTI_ACCOUNT = ("normal_business", "cloud_business", "legit_sg_hk_company",
                  "legit_channel_partner", "university_exempt")  # fmt: skip
_HUBS = ("HK", "SG", "MY", "AE")  # where circumventers' billing addresses tend to be
_HISTORY_DAYS = 540  # how long before the window the oldest accounts were created


@dataclass
class Population:
    """Per-account arrays every later stage draws from (index i = account i)."""

    spec: np.ndarray  # index into SPECS
    created_ns: np.ndarray
    act_start_ns: np.ndarray
    act_end_ns: np.ndarray
    declared: np.ndarray
    operator: np.ndarray
    is_org: np.ndarray
    ring: np.ndarray  # accounts run by one operator or one organisation share this id
    careful: np.ndarray
    care: np.ndarray  # 0..1: how much of their trace a (non-careful) circumventer hides
    start_ns: int
    end_ns: int
    ev: Evasion  # the scenario's per-account habits and tells (none in the default world)

    @property
    def n(self) -> int:
        return len(self.spec)

    def is_positive(self) -> np.ndarray:
        return np.array([s.typology is not None for s in SPECS])[self.spec]


def _groups(rng: np.random.Generator, idx: np.ndarray, lo: int, hi: int) -> list[np.ndarray]:
    """Cut shuffled account indices into consecutive groups of lo..hi accounts."""
    idx = rng.permutation(idx)
    sizes = rng.integers(lo, hi + 1, size=len(idx) + 1)
    cuts = np.cumsum(sizes)
    cuts = cuts[cuts < len(idx)]
    return [g for g in np.split(idx, cuts) if len(g)]


def make_population(
    rng: np.random.Generator, n: int, start_ns: int, end_ns: int,
    scenario: Scenario = SCENARIOS["default"], ev_rng: np.random.Generator | None = None,
) -> Population:  # fmt: skip
    """Draw archetypes and sign-up times; turn late positives careful; form farms and org groups.

    The scenario's habits and tells are drawn from `ev_rng` (its own stream), never from `rng`.
    """
    weights = np.array([s.weight for s in SPECS])
    spec = rng.choice(len(SPECS), size=n, p=weights / weights.sum())
    before = rng.random(n) < 0.3
    created = np.where(
        before,
        start_ns - rng.uniform(0, _HISTORY_DAYS, n) * NS_PER_DAY,
        rng.uniform(start_ns, end_ns - 2 * NS_PER_DAY, n),
    ).astype(np.int64)
    # Careful evasion spreads over time: later sign-ups are more often careful.
    frac = (created - (start_ns - _HISTORY_DAYS * NS_PER_DAY)) / (
        end_ns - start_ns + _HISTORY_DAYS * NS_PER_DAY
    )
    p_careful = CAREFUL_SHARE[0] + (CAREFUL_SHARE[1] - CAREFUL_SHARE[0]) * frac
    careful = np.zeros(n, dtype=bool)
    for i, s in enumerate(SPECS):
        if s.careful:
            flip = (spec == i) & (rng.random(n) < p_careful)
            spec[flip] = SPECS.index(BY_NAME[s.careful])
            careful |= flip

    ring = np.arange(n, dtype=np.int64)
    groups: list[np.ndarray] = []
    for i, s in enumerate(SPECS):
        members = np.flatnonzero(spec == i)
        if s.ring[1] > 1:
            groups += _groups(rng, members, *s.ring)
        elif s.name in _MULTI_ACCOUNT:
            multi = members[rng.random(len(members)) < 0.12]
            groups += _groups(rng, multi, 2, 4)
    declared = np.empty(n, dtype=object)
    operator = np.empty(n, dtype=object)
    is_org = np.zeros(n, dtype=bool)
    for i, s in enumerate(SPECS):
        m = spec == i
        k = int(m.sum())
        if not k:
            continue
        declared[m] = choice(rng, s.declared, k)
        operator[m] = (
            declared[m]
            if s.operator == "declared"
            else choice(rng, cast("Mapping[str, float]", s.operator), k)
        )
        is_org[m] = rng.random(k) < s.org
    for g in groups:  # one operator / organisation: same country, type; sign-ups close in time
        lead = g[0]
        ring[g] = lead
        declared[g] = declared[lead]
        operator[g] = operator[lead]
        is_org[g] = is_org[lead]
        jitter = rng.uniform(0, 20, len(g)) * NS_PER_DAY
        created[g] = np.minimum(created[lead] + jitter, end_ns - 2 * NS_PER_DAY).astype(np.int64)

    act_start = np.maximum(created, start_ns)
    lifetime = rng.exponential(150, n) * NS_PER_DAY
    churn = rng.random(n) < 0.2
    act_end = np.where(churn, np.minimum(act_start + lifetime, end_ns), end_ns).astype(np.int64)
    loud = np.array([s.typology is not None for s in SPECS])[spec] & ~careful
    care = np.where(loud, rng.uniform(0.0, 0.9, n), 0.0)
    positive = np.array([s.typology is not None for s in SPECS])[spec]
    ev = draw_evasion(
        ev_rng if ev_rng is not None else np.random.default_rng(0), scenario, positive, careful,
        created, start_ns, end_ns, _HISTORY_DAYS,
    )  # fmt: skip
    return Population(
        spec=spec,
        created_ns=created,
        act_start_ns=act_start.astype(np.int64),
        act_end_ns=np.maximum(act_end, act_start + NS_PER_DAY).clip(max=end_ns),
        declared=declared,
        operator=operator,
        is_org=is_org,
        ring=ring,
        careful=careful,
        care=care,
        start_ns=int(start_ns),
        end_ns=int(end_ns),
        ev=ev,
    )


def make_accounts(
    rng: np.random.Generator, pop: Population, ids: np.ndarray, signup_country: np.ndarray,
    org_id: np.ndarray, email_domain: np.ndarray,
) -> pd.DataFrame:  # fmt: skip
    """The accounts table: declared facts, billing country, tier, partner and exemption flags."""
    n = pop.n
    tier = np.empty(n, dtype=object)
    partner = np.zeros(n, dtype=bool)
    exempt = np.zeros(n, dtype=bool)
    for i, s in enumerate(SPECS):
        m = pop.spec == i
        k = int(m.sum())
        if k:
            tier[m] = choice(rng, s.tiers, k)
            partner[m] = rng.random(k) < s.partner
            exempt[m] = rng.random(k) < s.exemption
    billing = pop.declared.copy()
    u = rng.random(n)
    hub = np.array(_HUBS, dtype=object)[rng.integers(0, len(_HUBS), n)]
    positive = pop.is_positive() & ~pop.careful
    billing[(u < 0.25) & positive] = hub[(u < 0.25) & positive]
    other = np.array(["US", "GB", "DE", "SG", "HK", "CA"], dtype=object)[rng.integers(0, 6, n)]
    billing[(u > 0.93) & (u < 0.97)] = other[(u > 0.93) & (u < 0.97)]
    billing[u >= 0.97] = None
    return pd.DataFrame(
        {
            "account_id": ids,
            "created_at": pop.created_ns,
            "account_type": np.where(pop.is_org, "organization", "individual"),
            "org_id": org_id,
            "declared_country": pop.declared,
            "billing_country": billing,
            "email_domain": email_domain,
            "signup_ip_country": signup_country,
            "tier": tier,
            "is_channel_partner": partner,
            "research_exemption": exempt,
        }
    )


def freemail_domains(rng: np.random.Generator, pop: Population) -> np.ndarray:
    """Free-mail domains following the operator's habits (careful evaders use global ones)."""
    out = np.empty(pop.n, dtype=object)
    for country in np.unique(pop.operator.astype(str)):
        m = (pop.operator == country) & ~pop.careful
        if m.any():
            out[m] = choice(
                rng, geo.FREEMAIL_BY_COUNTRY.get(country, geo.FREEMAIL_DEFAULT), int(m.sum())
            )
    out[pop.careful] = choice(rng, geo.CAREFUL_FREEMAIL, int(pop.careful.sum()))
    habit = pop.ev.habit("email")
    if habit.any():  # a circumventer who took up a global mailbox (no draw in the default world)
        out[habit] = choice(rng, geo.CAREFUL_FREEMAIL, int(habit.sum()))
    tell = pop.ev.tell("email")
    out[tell] = pop.ev.tell_email[tell]  # an innocent customer on a Chinese mail provider
    return out
