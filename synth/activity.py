"""API traffic (hourly aggregates) and console logins, drawn per account and vectorised.

An account's rows follow its operator's daily rhythm (a flat share for automated or
relayed traffic), its keys, its routing slots and its prompt languages; relays and
farms grow over time. Everything lies between sign-up and the end of the timeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exportguard.synth import geo
from exportguard.synth.archetypes import SPECS
from exportguard.synth.common import NS_PER_DAY, NS_PER_HOUR, choice, log_uniform_int
from exportguard.synth.population import Population
from exportguard.synth.routing import Routing

LANGS = ("en", "zh", "ru", "fa", "es", "de", "fr", "pt", "ja", "ko", "ms", "uk", "id", "vi",
         "tr", "th", "pl", "it", "nl", "he", "ar", "sv", "hy", "ka", "et")  # fmt: skip


@dataclass
class Usage:
    """api_usage as integer-coded arrays (strings are attached once, at the end)."""

    account: np.ndarray
    key: np.ndarray
    hour_ns: np.ndarray
    prefix: np.ndarray
    requests: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    end_users: np.ndarray
    lang: np.ndarray  # index into LANGS, -1 = null
    lang_share: np.ndarray  # NaN when lang is null
    n_keys: np.ndarray  # per account


def _spec_param(
    pop: Population, rng: np.random.Generator, attr: str
) -> tuple[np.ndarray, np.ndarray]:
    lo = np.array([getattr(s, attr)[0] for s in SPECS], dtype=float)[pop.spec]
    hi = np.array([getattr(s, attr)[1] for s in SPECS], dtype=float)[pop.spec]
    return lo, hi


def _offsets(pop: Population, source: str = "operator") -> np.ndarray:
    """Each account's UTC offset (hours) of the operator's real life or the declared country."""
    ref = pop.operator if source == "operator" else pop.declared
    return np.array([geo.offset_hours(c) for c in ref], dtype=float)


def _primary_language(rng: np.random.Generator, pop: Population) -> np.ndarray:
    out = np.empty(pop.n, dtype=object)
    for i, s in enumerate(SPECS):
        m = np.flatnonzero(pop.spec == i)
        if len(m):
            out[m] = choice(rng, s.lang, len(m))
    local = np.array([geo.local_lang(c) for c in pop.declared], dtype=object)
    op = np.array([geo.local_lang(c) for c in pop.operator], dtype=object)
    out = np.where(out == "local", local, np.where(out == "op", op, out))
    out = np.where(rng.random(pop.n) < 0.7 * pop.care, "en", out)  # some write in English
    out = np.where(pop.ev.habit("prompts"), "en", out)  # ... and some took up that habit
    out = np.where(pop.ev.tell("prompts"), pop.ev.tell_lang, out)  # innocent zh/ru/fa writers
    return np.array([LANGS.index(x) if x in LANGS else 0 for x in out], dtype=np.int64)


def make_usage(rng: np.random.Generator, pop: Population, routing: Routing) -> Usage:
    """Hourly traffic rows, one per (account, key, hour, prefix)."""
    n = pop.n
    med, sig = _spec_param(pop, rng, "rows_per_day")
    rate = np.exp(rng.normal(np.log(med), sig)) * (rng.random(n) > 0.08)
    days = (pop.act_end_ns - pop.act_start_ns) / NS_PER_DAY
    n_rows = rng.poisson(np.minimum(rate, 60.0) * days)
    owner = np.repeat(np.arange(n), n_rows)
    g_lo, g_hi = _spec_param(pop, rng, "growth")
    growth = rng.uniform(g_lo, g_hi)[owner]
    pos = rng.random(len(owner)) ** (1.0 / growth)
    t = pop.act_start_ns[owner] + pos * (pop.act_end_ns - pop.act_start_ns)[owner]
    day = (t // NS_PER_DAY).astype(np.int64) * NS_PER_DAY
    f_lo, f_hi = _spec_param(pop, rng, "flat")
    flat = rng.uniform(f_lo, f_hi)
    peak = rng.normal(14.5, 1.5, n)
    local = np.where(rng.random(len(owner)) < flat[owner], rng.uniform(0, 24, len(owner)),
                     rng.normal(peak[owner], 3.5))  # fmt: skip
    utc = np.floor(local - _offsets(pop)[owner]) % 24
    hour = day + (utc * NS_PER_HOUR).astype(np.int64)
    first = -(-pop.act_start_ns // NS_PER_HOUR) * NS_PER_HOUR  # first whole hour after sign-up
    last = (pop.end_ns // NS_PER_HOUR) * NS_PER_HOUR - NS_PER_HOUR
    hour = np.where(hour < first[owner], hour + NS_PER_DAY, hour)
    hour = np.where(hour > last, hour - NS_PER_DAY, hour)
    hour = np.clip(hour, first[owner], last)
    keep = hour >= first[owner]

    k_lo, k_hi = _spec_param(pop, rng, "keys")
    n_keys = log_uniform_int(rng, k_lo, k_hi)
    key_base = np.concatenate([[0], np.cumsum(n_keys)[:-1]])
    key = key_base[owner] + np.floor(n_keys[owner] * rng.random(len(owner)) ** 1.7).astype(np.int64)
    slot = (rng.random(len(owner))[:, None] > np.cumsum(routing.weight, axis=1)[owner]).sum(axis=1)
    prefix = routing.pick(rng, owner, np.minimum(slot, routing.weight.shape[1] - 1))
    combo = (key * 40_000 + (hour - pop.start_ns) // NS_PER_HOUR) * (
        len(routing.country) + 1
    ) + prefix
    keep &= ~_duplicated(combo)
    owner, key, hour, prefix = owner[keep], key[keep], hour[keep], prefix[keep]
    m = len(owner)

    req_med = 4.0 * (1.0 + med) * np.exp(rng.normal(0, 0.8, n))
    requests = np.maximum(1, np.round(np.exp(rng.normal(np.log(req_med[owner]), 0.9)))).astype(
        np.int64
    )
    tpr = np.exp(rng.normal(np.log(700), 0.7, n))
    inp = np.round(requests * np.exp(rng.normal(np.log(tpr[owner]), 0.5))).astype(np.int64)
    ratio = np.exp(rng.normal(np.log(0.35), 0.5, n))
    out = np.round(inp * np.exp(rng.normal(np.log(ratio[owner]), 0.4))).astype(np.int64)
    e_p, e_med = _spec_param(pop, rng, "end_users")
    sends = rng.random(n) < np.maximum(e_p, 0.03)
    lam = np.exp(rng.normal(np.log(np.maximum(e_med, 1.0)), 0.8))
    end_users = np.where(sends[owner], np.minimum(requests, rng.poisson(lam[owner])), 0)

    primary = _primary_language(rng, pop)
    secondary = np.where(primary == 0, np.array([LANGS.index(geo.local_lang(c)) if geo.local_lang(c) in LANGS else 0
                                                 for c in pop.declared]), 0)  # fmt: skip
    s_lo, s_hi = _spec_param(pop, rng, "lang_share")
    p_primary = rng.uniform(s_lo, s_hi)
    lang = np.where(rng.random(m) < p_primary[owner], primary[owner], secondary[owner])
    share = 0.35 + 0.65 * rng.beta(4.0, 1.5, m)
    null = rng.random(m) < 0.06
    lang[null] = -1
    share[null] = np.nan
    return Usage(
        owner,
        key,
        hour,
        prefix,
        requests,
        inp,
        out,
        end_users.astype(np.int64),
        lang,
        share,
        n_keys,
    )


def _duplicated(values: np.ndarray) -> np.ndarray:
    """True for every repeat of a value after its first occurrence (order kept)."""
    order = np.argsort(values, kind="stable")
    sv = values[order]
    dup_sorted = np.concatenate([[False], sv[1:] == sv[:-1]])
    out = np.empty(len(values), dtype=bool)
    out[order] = dup_sorted
    return out
