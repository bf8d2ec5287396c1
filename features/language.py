"""Language: prompt and browser languages of restricted regions, relative to the declared country.

A restricted-region language is only a weak flag where it is an ordinary local language
(Chinese in Taiwan or Singapore), so the "unexpected" share counts it only where policy's
`expected_languages` does not list the declared country. Prompt shares weight each hour by
its input tokens times the dominant language's share (taken as 1 when not reported); hours
without a dominant language are left out.
"""

from __future__ import annotations

import re

import numpy as np

from exportguard.features import agg
from exportguard.features.context import NS_DAY, Context, factorize, floats

_SUBTAG = re.compile(r"[-_]")


def primary_language(tag: object) -> str:
    """ISO 639 primary subtag of a language tag, lower case ('zh-Hans-CN' -> 'zh')."""
    return _SUBTAG.split(str(tag).strip(), maxsplit=1)[0].lower()


def tag_region(tag: object) -> str | None:
    """Region subtag of a BCP 47 tag ('zh-Hans-CN' -> 'CN'), or None when absent."""
    for part in _SUBTAG.split(str(tag).strip())[1:]:
        if len(part) == 2 and part.isalpha():
            return part.upper()
    return None


def restricted_browser_tag(
    tag: object, restricted_countries: set[str], languages: set[str]
) -> bool:
    """A browser language of a restricted region: its region is restricted, or, with no region,
    its language is a restricted-region language."""
    region = tag_region(tag)
    if region is not None:
        return region in restricted_countries
    return primary_language(tag) in languages


def language_features(ctx: Context) -> dict[str, np.ndarray]:
    """Language family, one value per request."""
    n, pol = ctx.n_req, ctx.policy
    usage = ctx.tables.api_usage
    codes, uniques = factorize(usage["top_language"])
    langs = [primary_language(u) for u in uniques]
    restricted_langs = set(pol.restricted_languages)
    is_restricted = np.array([lang in restricted_langs for lang in langs] + [False])
    # expected[l, c]: language l is ordinary in vocabulary country c
    expected = np.zeros((len(langs) + 1, len(ctx.vocab) + 1), dtype=bool)
    for li, lang in enumerate(langs):
        for country in pol.expected_languages.get(lang, ()):
            code = ctx.vocab.code(country)
            if code < expected.shape[1] - 1:
                expected[li, code] = True

    j = ctx.usage_join.within(30 * NS_DAY)
    lang = codes[j.rows]
    share = floats(usage["top_language_share"])[j.rows]
    tokens = ctx.usage["input_tokens"][j.rows]
    known = lang >= 0
    mass = tokens * np.where(np.isnan(share), 1.0, share)
    declared = ctx.declared[ctx.req_acc][j.req]
    restricted_mass = np.where(is_restricted[lang], mass, 0.0)
    unexpected_mass = np.where(is_restricted[lang] & ~expected[lang, declared], mass, 0.0)
    den = agg.total(j.req[known], tokens[known], n)
    out = {
        "restricted_language_share_30d": agg.share(agg.total(j.req, restricted_mass, n), den),
        "unexpected_restricted_language_share_30d": agg.share(
            agg.total(j.req, unexpected_mass, n), den
        ),
    }

    lcodes, luniques = factorize(ctx.tables.logins["browser_language"])
    rc = set(pol.restricted_countries)
    flag = np.array([restricted_browser_tag(t, rc, restricted_langs) for t in luniques] + [False])
    jl = ctx.logins_join
    bl = lcodes[jl.rows]
    out["browser_language_restricted_share"] = agg.share(
        agg.total(jl.req[flag[bl]], None, n), agg.total(jl.req[bl >= 0], None, n)
    )
    return out
