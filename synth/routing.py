"""Where each account's traffic comes from: network prefixes, their country, ASN and type.

Every account gets up to four weighted slots (home/office, cloud, VPN, and a small "leak"
slot from the operator's real country). Prefixes are shared where they are in reality:
VPN exits and cloud ranges across unrelated accounts, relay servers within a farm, campus
networks within a university. Geolocation and network-type labels are then made noisy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np

from exportguard.synth import geo
from exportguard.synth.archetypes import SPECS, WORLD
from exportguard.synth.common import choice
from exportguard.synth.population import Population

K = 4
NETS = ("residential", "mobile", "business", "hosting", "vpn_proxy", "tor", "unknown")
_CLOUD_ASN = np.array([16509, 15169, 8075, 45102, 14061, 20473, 63949, 24940, 13335, 31898])
_VPN_ASN = np.array([9009, 60068, 212238, 51167, 16276, 20860, 62240, 396356])
_LEAK_COUNTRY = {
    "zh_dev_abroad": "CN",
    "cn_student_abroad": "CN",
    "ru_speaking_dev": "RU",
    "fa_speaking_dev": "IR",
}


@dataclass
class Routing:
    weight: np.ndarray  # (n, K) slot weights, rows sum to 1
    prefix: np.ndarray  # (n, K) first prefix index of each slot's block
    prefix_str: np.ndarray  # per prefix
    country: np.ndarray  # per prefix, observed (GeoIP) country or None
    true_country: np.ndarray  # per prefix
    net: np.ndarray  # per prefix, observed network-type code (index into NETS)
    asn: np.ndarray  # per prefix
    size: np.ndarray | None = None  # (n, K) block length
    first: np.ndarray | None = None  # (n, K) where the slot starts inside its block
    spread: np.ndarray | None = None  # (n, K) how many prefixes of the block the slot uses

    def pick(self, rng: np.random.Generator, owner: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """A prefix per row: one of the few its account's slot rotates through."""
        assert self.spread is not None and self.first is not None and self.size is not None
        off = np.floor(rng.random(len(owner)) * self.spread[owner, slot]).astype(np.int64)
        return self.prefix[owner, slot] + (self.first[owner, slot] + off) % self.size[owner, slot]

    def home(self) -> np.ndarray:
        """Each account's first prefix of its main slot (where it signed up from)."""
        assert self.first is not None
        return self.prefix[:, 0] + self.first[:, 0]


def _prefix_strings(rng: np.random.Generator, n: int) -> np.ndarray:
    """Distinct anonymised client networks: IPv4 /24 (90%) or IPv6 /48."""
    v4 = rng.choice(2**24 - 2**22, size=n, replace=False) + 2**16
    a, b, c = (v4 >> 16) & 255, (v4 >> 8) & 255, v4 & 255
    six = rng.random(n) < 0.1
    h1, h2 = rng.integers(0, 2**16, n), rng.integers(0, 2**16, n)
    return np.array(
        [f"2a0{x % 10}:{y:04x}:{z:04x}::/48" if s else f"{x}.{y}.{z}.0/24"
         for x, y, z, s, in zip(np.where(six, h1, a), np.where(six, h2, b), np.where(six, c * 97, c), six, strict=True)],
        dtype=object,
    )  # fmt: skip


def make_routing(rng: np.random.Generator, pop: Population) -> Routing:
    """Slots per account, the prefixes behind them, and noisy GeoIP / network-type labels."""
    n = pop.n
    weight = np.zeros((n, K))
    country = np.empty((n, K), dtype=object)
    net = np.zeros((n, K), dtype=np.int64)
    pool = np.full((n, K), "own", dtype=object)
    for i, s in enumerate(SPECS):
        m = np.flatnonzero(pop.spec == i)
        if not len(m):
            continue
        for j, slot in enumerate(s.slots):
            weight[m, j] = rng.uniform(*slot.weight, len(m))
            if slot.country == "declared":
                country[m, j] = pop.declared[m]
            elif slot.country == "operator":
                country[m, j] = pop.operator[m]
            else:
                country[m, j] = choice(rng, cast("Mapping[str, float]", slot.country), len(m))
            net[m, j] = [NETS.index(x) for x in choice(rng, slot.net, len(m))]
            pool[m, j] = slot.pool
        leak_c = np.where(np.isin(pop.operator[m], geo.RESTRICTED), pop.operator[m],
                          _LEAK_COUNTRY.get(s.name, None))  # type: ignore[arg-type]  # fmt: skip
        has_leak = rng.random(len(m)) < (0.85 if s.leak > 0 else 0.03)
        odd = choice(rng, WORLD | {"CN": 2, "RU": 1}, len(m))
        country[m, K - 1] = np.where((s.leak > 0) & (leak_c != None), leak_c, odd)  # noqa: E711
        scale = (s.leak if s.leak > 0 else 0.04) * (1 - pop.care[m])
        weight[m, K - 1] = has_leak * scale * rng.gamma(1.0, 1.0, len(m))
        net[m, K - 1] = [
            NETS.index(x)
            for x in choice(rng, {"residential": 5, "mobile": 3, "business": 2}, len(m))
        ]
    _scenario_routes(pop, weight, country, net, pool)
    weight /= weight.sum(axis=1, keepdims=True)

    # Each slot owns a block of prefixes (home and mobile addresses change; VPN exits rotate).
    # Blocks are shared where they are in reality: VPN/cloud ranges per country, farm relays.
    lam = np.array([1.2, 4.0, 0.3, 1.0, 2.0, 0.5, 0.5])[net]
    spread = 1 + rng.poisson(lam)
    start = np.zeros((n, K), dtype=np.int64)
    size = spread.copy()
    first = np.zeros((n, K), dtype=np.int64)
    own = pool == "own"
    start[own] = np.concatenate([[0], np.cumsum(spread[own])[:-1]])
    nxt = int(spread[own].sum())
    block_country = [np.repeat(country[own], spread[own])]
    block_net = [np.repeat(net[own], spread[own])]
    shared = np.isin(pool, ("ring", "campus"))
    country[shared] = country[pop.ring][shared]
    net[shared] = net[pop.ring][shared]
    slot_key = pop.ring[:, None] * K + np.arange(K)[None, :]
    uk, ufirst, inv = np.unique(slot_key[shared], return_index=True, return_inverse=True)
    gsize = 3 + rng.poisson(3.0, len(uk))
    gstart = nxt + np.concatenate([[0], np.cumsum(gsize)[:-1]])
    start[shared], size[shared] = gstart[inv], gsize[inv]
    first[shared] = rng.integers(0, 1 << 30, int(shared.sum())) % gsize[inv]
    nxt += int(gsize.sum())
    block_country.append(np.repeat(country[shared][ufirst], gsize))
    block_net.append(np.repeat(net[shared][ufirst], gsize))
    per_country = max(8, n // 400)
    for name, pool_net, extra in (("vpn", "vpn_proxy", 3.0), ("cloud", "hosting", 1.5)):
        rows = pool == name
        cs, cinv = np.unique(country[rows].astype(str), return_inverse=True)
        start[rows] = nxt + cinv * per_country
        size[rows] = per_country
        first[rows] = rng.integers(0, per_country, int(rows.sum()))
        spread[rows] = 1 + rng.poisson(extra, int(rows.sum()))
        block_country.append(np.repeat(cs.astype(object), per_country))
        pn = np.where(rng.random(len(cs) * per_country) < 0.85, NETS.index(pool_net),
                      rng.choice([0, 2, 3, 6], len(cs) * per_country))  # fmt: skip
        block_net.append(pn)
        nxt += len(cs) * per_country
    true_country = np.concatenate(block_country).astype(object)
    pnet = np.concatenate(block_net).astype(np.int64)
    routing = _observe(rng, weight, start, true_country, pnet)
    routing.size, routing.first, routing.spread = size, first, spread
    return routing


def _scenario_routes(pop: Population, weight: np.ndarray, country: np.ndarray, net: np.ndarray,
                     pool: np.ndarray) -> None:  # fmt: skip
    """Apply the scenario's routing habits and tells in place (nothing in the default world).

    A circumventer with the proxy habit exits through residential proxies of its own instead of
    shared VPN ranges; one with the relay habit places relays and proxies in the declared country.
    An innocent account with the proxy tell uses a VPN exit in a hub; with the relay tell it runs
    part of its traffic on cloud servers in a hub.
    """
    ev = pop.ev
    proxy = ev.habit("proxy")[:, None] & (pool[:, : K - 1] == "vpn")
    sub_w, sub_c, sub_n, sub_p = (a[:, : K - 1] for a in (weight, country, net, pool))
    sub_p[proxy] = "own"
    sub_n[proxy] = NETS.index("residential")
    moved = ev.habit("relay")[:, None] & (sub_w > 0) & (sub_c != pop.declared[:, None])
    moved &= ~(sub_c == pop.operator[:, None])  # the operator's own country is a leak, not a relay
    sub_c[moved] = np.broadcast_to(pop.declared[:, None], sub_c.shape)[moved]
    for tell, slot, pool_name, net_name in (("proxy", 2, "vpn", "vpn_proxy"),
                                            ("relay", 1, "cloud", "hosting")):  # fmt: skip
        m = ev.tell(tell)
        weight[m, slot] = ev.tell_weight[m]
        country[m, slot] = ev.tell_hub[m]
        net[m, slot] = NETS.index(net_name)
        pool[m, slot] = pool_name


def _observe(rng: np.random.Generator, weight: np.ndarray, prefix: np.ndarray,
             true_country: np.ndarray, pnet: np.ndarray) -> Routing:  # fmt: skip
    """What the provider sees: ASN, and GeoIP / network-type labels with realistic errors."""
    total = len(true_country)
    missing = np.array([c is None for c in true_country])
    true_country[missing] = "US"
    observed = true_country.copy()
    u = rng.random(total)
    wrong = choice(rng, WORLD | {"CN": 1, "RU": 1}, total)
    observed[u < 0.02] = wrong[u < 0.02]
    observed[(u >= 0.02) & (u < 0.035)] = None
    obs_net = pnet.copy()
    v = rng.random(total)
    is_vpn = pnet == NETS.index("vpn_proxy")
    obs_net[is_vpn & (v < 0.2)] = NETS.index("residential")
    obs_net[is_vpn & (v >= 0.2) & (v < 0.3)] = NETS.index("hosting")
    obs_net[is_vpn & (v >= 0.3) & (v < 0.33)] = NETS.index("tor")
    obs_net[(pnet == NETS.index("hosting")) & (v < 0.05)] = NETS.index("business")
    obs_net[(pnet == NETS.index("residential")) & (v < 0.03)] = NETS.index("vpn_proxy")
    obs_net[v > 0.985] = NETS.index("unknown")
    cidx = np.unique(true_country.astype(str), return_inverse=True)[1]
    country_asn = rng.integers(1_000, 60_000, size=(cidx.max() + 1 if total else 1, 6))
    asn = country_asn[cidx, rng.integers(0, 6, total)]
    host = pnet == NETS.index("hosting")
    asn[host] = _CLOUD_ASN[rng.integers(0, len(_CLOUD_ASN), int(host.sum()))]
    asn[is_vpn] = _VPN_ASN[rng.integers(0, len(_VPN_ASN), int(is_vpn.sum()))]
    return Routing(
        weight, prefix, _prefix_strings(rng, total), observed, true_country, obs_net, asn
    )
