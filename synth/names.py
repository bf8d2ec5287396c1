"""Names of people, companies and addresses, and fuzzy variants of listed entities' names."""

from __future__ import annotations

import numpy as np

PINYIN = ("hua", "xin", "tian", "long", "zhong", "hai", "jin", "da", "ming", "rui", "bo",
          "sheng", "feng", "yuan", "kai", "heng", "tai", "xing", "chuang", "wei", "jia", "hong",
          "an", "teng", "yi", "zhi", "guang", "chen", "lian", "mei")  # fmt: skip
WESTERN = ("blue", "north", "peak", "harbor", "vertex", "silver", "oak", "river", "bright",
           "nova", "atlas", "summit", "delta", "cedar", "orbit", "quantum", "pixel", "lumen",
           "iron", "maple", "crest", "signal", "arc", "cobalt", "prism", "stone", "tide")  # fmt: skip
RUSSIAN = ("Rostek", "Sibir", "Volga", "Neva", "Ural", "Altai", "Baikal", "Sever", "Zenit")
PERSIAN = ("Pars", "Sepahan", "Arya", "Kaveh", "Simorgh", "Zagros", "Damavand", "Alborz")
INDUSTRY = ("Technology", "Trading", "Electronics", "Information", "Digital", "Network",
            "Software", "Intelligent", "Data", "Semiconductor", "Logistics", "Holdings")  # fmt: skip
ABBREV = {"Technology": "Tech", "Information": "Info", "Electronics": "Electronic",
          "Intelligent": "Intelligence", "Semiconductor": "Semi", "Holdings": "Holding"}  # fmt: skip
SUFFIX = {"SG": "Pte. Ltd.", "HK": "Limited", "MY": "Sdn. Bhd.", "AE": "FZE", "US": "Inc.",
          "GB": "Ltd", "DE": "GmbH", "CN": "Co., Ltd.", "JP": "K.K.", "VG": "Ltd.", "FR": "SAS",
          "RU": "LLC", "IR": "Co.", "TW": "Co., Ltd."}  # fmt: skip
CN_CITIES = ("Shenzhen", "Beijing", "Shanghai", "Hangzhou", "Guangzhou", "Chengdu", "Wuhan")
CN_FAMILY = ("Zhang", "Wang", "Li", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu")
CN_GIVEN = ("Wei", "Fang", "Jun", "Lei", "Min", "Jing", "Hao", "Yan", "Tao", "Xiaoming", "Lin")
RU_NAMES = ("Ivan Petrov", "Dmitry Volkov", "Sergey Orlov", "Anna Sokolova", "Oleg Morozov",
            "Elena Kuznetsova", "Pavel Smirnov", "Irina Lebedeva")  # fmt: skip
FA_NAMES = ("Ali Rezaei", "Reza Ahmadi", "Mohammad Hosseini", "Sara Karimi", "Hamid Moradi")
W_FAMILY = ("Smith", "Tan", "Lim", "Ng", "Wong", "Garcia", "Müller", "Brown", "Lee", "Kumar",
            "Ong", "Martin", "Rahman", "Abdullah", "Taylor", "Suzuki", "Cohen", "Silva")  # fmt: skip
W_GIVEN = ("James", "Mary", "David", "Siew Ling", "Kelvin", "Aisha", "Raj", "Sarah", "Daniel",
           "Mei Ling", "Ahmad", "Emma", "Lucas", "Priya", "Kenji", "Nur", "Thomas", "Grace")  # fmt: skip


CITY = {"SG": "SINGAPORE", "HK": "HONG KONG", "MY": "KUALA LUMPUR", "AE": "DUBAI", "VG": "TORTOLA",
        "US": "NEW YORK", "GB": "LONDON", "DE": "BERLIN", "JP": "TOKYO", "CN": "SHENZHEN"}  # fmt: skip


def _pick(rng: np.random.Generator, pool: tuple[str, ...], n: int) -> np.ndarray:
    return np.asarray(pool, dtype=object)[rng.integers(0, len(pool), n)]


def company_cores(rng: np.random.Generator, n: int, chinese: np.ndarray) -> np.ndarray:
    """Brand cores: two pinyin syllables for Chinese-origin firms, two words for others."""
    zh = (_pick(rng, PINYIN, n) + _pick(rng, PINYIN, n)).astype(object)
    we = (_pick(rng, WESTERN, n) + _pick(rng, WESTERN, n)).astype(object)
    return np.array([s.capitalize() for s in np.where(chinese, zh, we)], dtype=object)


def legal_names(cores: np.ndarray, industry: np.ndarray, country: np.ndarray) -> np.ndarray:
    """Registered names: core, industry word and the jurisdiction's company suffix."""
    return np.array(
        [
            f"{c} {i} {SUFFIX.get(k, 'Ltd.')}"
            for c, i, k in zip(cores, industry, country, strict=True)
        ],
        dtype=object,
    )


def fuzzy_variant(rng: np.random.Generator, core: np.ndarray, industry: np.ndarray) -> np.ndarray:
    """A name that resembles a listed entity's without matching it exactly (abbreviation, tag)."""
    tag = _pick(rng, ("(HK)", "(SG)", "International", "Global", "(Asia)", ""), len(core))
    abbrev = rng.random(len(core)) < 0.6
    out = []
    for c, i, t, a in zip(core, industry, tag, abbrev, strict=True):
        word = ABBREV.get(i, i) if a else i
        out.append(" ".join(p for p in (c, word, t) if p))
    return np.array(out, dtype=object)


def person_names(rng: np.random.Generator, origin: np.ndarray) -> np.ndarray:
    """Full names whose style follows the person's country (CN, RU/BY, IR, or elsewhere)."""
    n = len(origin)
    zh = _pick(rng, CN_FAMILY, n) + " " + _pick(rng, CN_GIVEN, n)
    ru = _pick(rng, RU_NAMES, n)
    fa = _pick(rng, FA_NAMES, n)
    we = _pick(rng, W_GIVEN, n) + " " + _pick(rng, W_FAMILY, n)
    out = np.where(np.isin(origin, ("CN", "HK", "TW", "MO")), zh, we)
    out = np.where(np.isin(origin, ("RU", "BY")), ru, out)
    return np.where(origin == "IR", fa, out).astype(object)


def addresses(rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
    """Distinct normalised street addresses (one per row) in the given countries."""
    num = rng.integers(1, 999, len(country))
    unit = rng.integers(1, 60, len(country))
    street = _pick(rng, ("QUEENS RD", "ROBINSON RD", "JALAN AMPANG", "SHEIKH ZAYED RD",
                         "MAIN ST", "HIGH ST", "MARKET ST", "PARK AVE", "RAFFLES PL", "NATHAN RD"),
                   len(country))  # fmt: skip
    floor = rng.integers(1, 40, len(country))
    return np.array(
        [f"{a} {s} #{f:02d}-{u:02d} {CITY.get(c, c)} {c}"
         for a, s, f, u, c in zip(num, street, floor, unit, country, strict=True)],
        dtype=object,
    )  # fmt: skip
