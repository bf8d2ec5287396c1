"""Console logins: when and from where people sign in, on which device, with which browser."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exportguard.synth import geo
from exportguard.synth.archetypes import SPECS
from exportguard.synth.common import NS_PER_DAY, NS_PER_HOUR
from exportguard.synth.population import Population
from exportguard.synth.routing import K, Routing


@dataclass
class Logins:
    account: np.ndarray
    login_ns: np.ndarray
    prefix: np.ndarray
    device: np.ndarray  # device index
    tz_min: np.ndarray  # float, NaN = null
    tag: np.ndarray  # object: BCP 47 tag or None
    n_devices: int


def _tags(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, np.ndarray]:
    """Each account's usual browser language and how often it is used (else en-US)."""
    mode = np.array([s.browser_lang for s in SPECS], dtype=object)[pop.spec]
    mode = np.where(pop.ev.habit("browser_lang"), "en", mode)  # set the browser to English
    tell = pop.ev.tell("browser_lang")
    mode = np.where(tell, pop.ev.tell_browser, mode)  # an innocent zh/ru/fa-speaking user
    op = np.array([geo.browser_tag(c) for c in pop.operator], dtype=object)
    dec = np.array([geo.browser_tag(c) for c in pop.declared], dtype=object)
    zh = np.where(rng.random(pop.n) < 0.6, "zh-CN", "zh-TW")
    tag = np.select([mode == "operator", mode == "declared", mode == "en", mode == "zh",
                     mode == "ru", mode == "fa"], [op, dec, "en-US", zh, "ru-RU", "fa-IR"], "en-US")  # fmt: skip
    restricted_op = np.isin(pop.operator, geo.RESTRICTED) & ~pop.careful
    p = np.where(restricted_op, rng.uniform(0.7, 1.0, pop.n), rng.uniform(0.3, 0.8, pop.n))
    p = np.where(mode == "en", 0.93, p)
    p = np.where(tell, 0.85, p)
    return tag.astype(object), p


def make_logins(rng: np.random.Generator, pop: Population, routing: Routing) -> Logins:
    """Logins from sign-up on, in local daytime; farms share devices, leaks show in the console."""
    n = pop.n
    days = (pop.act_end_ns - pop.created_ns) / NS_PER_DAY
    rate = np.exp(rng.normal(np.log(0.035), 0.8, n)) * np.where(pop.is_org, 1.5, 1.0)
    count = 1 + rng.poisson(np.minimum(rate * days, 120))
    owner = np.repeat(np.arange(n), count)
    first = np.concatenate([[True], owner[1:] != owner[:-1]])
    m = len(owner)
    tz_src = np.array([s.tz for s in SPECS], dtype=object)[pop.spec]
    op_off = np.array([geo.offset_hours(c) for c in pop.operator])
    dec_off = np.array([geo.offset_hours(c) for c in pop.declared])
    rhythm = op_off[owner]
    t = pop.created_ns[owner] + rng.random(m) * (pop.act_end_ns - pop.created_ns)[owner]
    day = (t // NS_PER_DAY) * NS_PER_DAY
    local = rng.normal(13.0, 3.5, m)
    t = (day + ((local - rhythm) % 24) * NS_PER_HOUR).astype(np.int64)
    t = np.where(first, pop.created_ns[owner] + rng.uniform(1, 30, m) * 60e9, t).astype(np.int64)
    t = np.where(t < pop.created_ns[owner], t + NS_PER_DAY, t)
    t = np.clip(t, pop.created_ns[owner], pop.end_ns - 60_000_000_000)

    # Console sessions come from the same slots as API traffic, but the human leaks more.
    w = routing.weight.copy()
    loud = np.array([s.typology is not None for s in SPECS])[pop.spec] & ~pop.careful
    w[:, K - 1] *= np.where(loud, 4.0, 1.5)
    w /= w.sum(axis=1, keepdims=True)
    slot = (rng.random(m)[:, None] > np.cumsum(w, axis=1)[owner]).sum(axis=1)
    prefix = routing.pick(rng, owner, np.minimum(slot, K - 1))

    n_dev = 1 + rng.poisson(0.5, n)
    group_dev = np.bincount(pop.ring, weights=n_dev, minlength=n).astype(np.int64)
    base = np.concatenate([[0], np.cumsum(group_dev)[:-1]])
    device = base[pop.ring[owner]] + np.floor(rng.random(m) * group_dev[pop.ring[owner]]).astype(
        np.int64
    )
    lend = rng.random(m) < 0.004  # shared family / office computers link innocent accounts
    device[lend] = rng.integers(0, int(group_dev.sum()), int(lend.sum()))

    tz = np.where(tz_src == "declared", dec_off, op_off)[owner]
    hides = rng.random(m) < pop.care[owner]  # a partly careful operator sets the declared zone
    hides |= pop.ev.habit("tz")[owner]  # ... or one who took up that habit sets it always
    tz = np.where(hides, dec_off[owner], tz)
    slip = pop.careful[owner] & (rng.random(m) < 0.08)
    tz = np.where(slip, op_off[owner], tz)
    tz_tell = pop.ev.tell("tz")[owner]  # an innocent expat keeps a home-country clock
    tz = np.where(tz_tell, pop.ev.tell_tz_hours[owner], tz)
    travel = rng.random(m) < 0.03
    tz = np.where(travel, rng.choice([-5.0, 0.0, 1.0, 3.0, 8.0, 9.0], m), tz) * 60.0
    tz[rng.random(m) < 0.04] = np.nan
    tag, p = _tags(rng, pop)
    tags = np.where(rng.random(m) < p[owner] * (1 - pop.care[owner]), tag[owner], "en-US").astype(
        object
    )
    tags[rng.random(m) < 0.04] = None
    return Logins(owner, t, prefix, device, tz, tags, int(group_dev.sum()))
