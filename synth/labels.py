"""Investigation outcomes as a provider really has them: biased, delayed, partial and noisy.

Reviews start from rule alerts (which fire on obvious signs, e.g. restricted-country IPs),
tips, a small random audit, and follow-up investigations of a confirmed case's linked
accounts. Reviewers err both ways. A decision lands weeks to months after the trigger; one
that would land after the end of the timeline has not been made yet.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from exportguard.synth.archetypes import SPECS
from exportguard.synth.common import NS_PER_DAY
from exportguard.synth.population import Population

SOURCES = ("rule_alert", "tip", "audit", "investigation")
_GUESS = {"vpn_user": "proxy_access", "traveller": "proxy_access", "zh_dev_abroad": "proxy_access",
          "legit_channel_partner": "reseller", "cloud_business": "reseller",
          "legit_sg_hk_company": "shell_company", "university_exempt": "exemption_abuse"}  # fmt: skip


def _lognormal_days(rng: np.random.Generator, median: float, n: int) -> np.ndarray:
    return np.exp(rng.normal(np.log(median), 0.8, n)) * NS_PER_DAY


def make_labels(
    rng: np.random.Generator, pop: Population, signals: dict[str, np.ndarray]
) -> pd.DataFrame:
    """One label row per reviewed account (its first decision), rows with timestamps <= end."""
    n = pop.n
    positive = pop.is_positive()
    span = (pop.act_end_ns - pop.act_start_ns).astype(float)
    # Rules: each fires on an obvious sign; obvious cases are reviewed far more often.
    p_rule = 1 - np.prod([
        1 - 0.7 * (signals["restricted_share"] > 0.02),
        1 - 0.5 * (signals["login_restricted_share"] > 0.03),
        1 - 0.3 * (signals["unexpected_language_share"] > 0.4),
        1 - 0.4 * signals["signup_restricted"],
        1 - 0.3 * ((signals["end_users_max"] > 20) & ~signals["partner"]),
    ], axis=0)  # fmt: skip
    triggers = []
    rule = rng.random(n) < p_rule
    t_rule = (
        pop.act_start_ns
        + np.minimum(_lognormal_days(rng, 21, n), span)
        + _lognormal_days(rng, 35, n)
    )
    triggers.append((rule, t_rule, 0))
    tip = rng.random(n) < np.where(positive, 0.35, 0.002)
    t_tip = pop.act_start_ns + rng.random(n) * span + _lognormal_days(rng, 30, n)
    triggers.append((tip, t_tip, 1))
    audit = rng.random(n) < 0.01
    t_audit = pop.act_start_ns + rng.random(n) * span + _lognormal_days(rng, 14, n)
    triggers.append((audit, t_audit, 2))

    when = np.full(n, np.inf)
    source = np.full(n, -1)
    for hit, t, code in triggers:
        better = hit & (t < when)
        when[better], source[better] = t[better], code
    reviewed = np.isfinite(when) & (when <= pop.end_ns)
    careful = pop.careful
    ev = pop.ev  # the hard scenario: each adopted habit makes a reviewer likelier to miss it
    p_loud = 0.9 * (1 - ev.missed_per_habit * ev.habit_fraction())
    found = rng.random(n) < np.where(
        positive, np.where(careful, ev.careful_found, p_loud), np.where(source == 1, 0.08, 0.03)
    )
    label = reviewed & found
    # A confirmed case's farm-mates are investigated next (graph follow-up).
    confirmed_rings = np.unique(pop.ring[label & positive])
    farm = np.bincount(pop.ring, minlength=n)[pop.ring] > 1
    mates = np.isin(pop.ring, confirmed_rings) & ~reviewed & farm
    lead_time = (
        pd.Series(np.where(label, when, np.inf)).groupby(pop.ring).transform("min").to_numpy()
    )
    t_inv = lead_time + _lognormal_days(rng, 20, n)
    inv = mates & (t_inv <= pop.end_ns) & (rng.random(n) < 0.8)
    when[inv], source[inv] = t_inv[inv], 3
    reviewed |= inv
    label |= inv & (rng.random(n) < np.where(positive, 0.95, 0.3))

    idx = np.flatnonzero(reviewed)
    spec_name = np.array([s.name for s in SPECS], dtype=object)[pop.spec[idx]]
    true_typ = np.array([s.typology for s in SPECS], dtype=object)[pop.spec[idx]]
    guess = np.array([_GUESS.get(s, "other") for s in spec_name], dtype=object)
    typ = np.where(positive[idx], np.where(rng.random(len(idx)) < 0.9, true_typ, "other"), guess)
    typ = np.where(label[idx], typ, None)  # type: ignore[call-overload]  # None: no typology
    labelled_at = np.maximum(when[idx], pop.created_ns[idx]).astype(np.int64)
    return pd.DataFrame({
        "account": idx,
        "label": label[idx].astype(np.int64),
        "labelled_ns": np.minimum(labelled_at, pop.end_ns - 1_000_000_000),
        "source": np.asarray(SOURCES, dtype=object)[source[idx]],
        "typology": typ,
    })  # fmt: skip
