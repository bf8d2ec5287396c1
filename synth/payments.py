"""Payment attempts: method, instrument and issuer follow the archetype; farms share cards."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np

from exportguard.synth.archetypes import SPECS, WORLD
from exportguard.synth.common import NS_PER_DAY, choice
from exportguard.synth.population import Population

METHODS = ("card", "prepaid_card", "bank_transfer", "wallet", "crypto", "invoice")
STATUSES = ("succeeded", "failed", "refunded", "disputed")
_TIER_RATE = {"free": 0.05, "build": 1.2, "scale": 2.0, "enterprise": 1.0}  # per 30 days


@dataclass
class Payments:
    account: np.ndarray
    paid_ns: np.ndarray
    amount: np.ndarray
    instrument: np.ndarray  # instrument index
    method: np.ndarray  # per instrument (index into METHODS)
    issuer: np.ndarray  # per instrument (country or None)
    status: np.ndarray  # index into STATUSES
    n_instruments: int


def _instruments(
    rng: np.random.Generator, pop: Population, n_inst: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Method and issuer country of each instrument, drawn from its owner-group's archetype."""
    owner = np.repeat(np.arange(pop.n), n_inst)
    method = np.empty(len(owner), dtype=object)
    issuer = np.empty(len(owner), dtype=object)
    spec = pop.spec[owner]
    for i, s in enumerate(SPECS):
        m = np.flatnonzero(spec == i)
        if not len(m):
            continue
        method[m] = choice(rng, s.pay, len(m))
        if s.issuer == "declared":
            issuer[m] = pop.declared[owner[m]]
        else:
            drawn = choice(rng, cast("Mapping[str, float]", s.issuer), len(m))
            issuer[m] = np.where(drawn == "declared", pop.declared[owner[m]], drawn)
    clean = rng.random(len(owner)) < pop.care[owner]  # a card from the declared country
    clean |= pop.ev.habit("issuer")[owner]  # ... always, for one who took up that habit
    tell = pop.ev.tell("issuer")[owner] & (method != "crypto")  # an innocent hub-issued card
    issuer[tell] = pop.ev.tell_issuer[owner[tell]]
    issuer[clean] = pop.declared[owner[clean]]
    expat = rng.random(len(owner)) < 0.05
    issuer[expat] = choice(rng, WORLD, int(expat.sum()))
    issuer[(method == "crypto") & (rng.random(len(owner)) < 0.7)] = None
    issuer[rng.random(len(owner)) < 0.03] = None
    return np.array([METHODS.index(x) for x in method], dtype=np.int64), issuer


def make_payments(rng: np.random.Generator, pop: Population, tier: np.ndarray,
                  tokens: np.ndarray) -> Payments:  # fmt: skip
    """Top-ups and invoices through each account's active life, sized by its token volume."""
    n = pop.n
    loud = pop.is_positive() & ~pop.careful
    n_inst = 1 + rng.poisson(np.where(loud, 1.2, 0.3))
    group_inst = np.bincount(pop.ring, weights=n_inst, minlength=n).astype(np.int64)
    method, issuer = _instruments(rng, pop, group_inst)
    base = np.concatenate([[0], np.cumsum(group_inst)[:-1]])

    days = (pop.act_end_ns - pop.act_start_ns) / NS_PER_DAY
    rate = np.array([_TIER_RATE[t] for t in tier]) * np.where(loud, 2.0, 1.0)
    count = rng.poisson(rate * days / 30.0 * np.exp(rng.normal(0, 0.4, n)))
    owner = np.repeat(np.arange(n), count)
    m = len(owner)
    paid = pop.act_start_ns[owner] + rng.random(m) * (pop.act_end_ns - pop.act_start_ns)[owner]
    paid = np.clip(paid.astype(np.int64), pop.created_ns[owner], pop.end_ns - 1_000_000_000)
    spend = 5.0 + tokens * 4e-6 * np.exp(rng.normal(0, 0.5, n))
    per = spend / np.maximum(count, 1)
    amount = np.round(np.maximum(np.exp(rng.normal(np.log(per[owner]), 0.5)), 5.0), 2)
    gi = group_inst[pop.ring[owner]]
    pick = np.floor(gi * rng.random(m) ** 1.5).astype(np.int64)
    instrument = base[pop.ring[owner]] + pick
    lend = rng.random(m) < 0.002  # a family card or a colleague's card: innocent links
    instrument[lend] = rng.integers(0, len(method), int(lend.sum()))

    fail_p = np.array([s.fail for s in SPECS])[pop.spec][owner]
    disp_p = np.array([s.dispute for s in SPECS])[pop.spec][owner]
    u = rng.random(m)
    status = np.select([u < fail_p, u < fail_p + disp_p, u < fail_p + disp_p + 0.01], [1, 3, 2], 0)
    return Payments(
        owner, paid, amount, instrument, method, issuer, status.astype(np.int64), len(method)
    )
