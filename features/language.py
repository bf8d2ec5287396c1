"""Language tags: the primary language and region of a BCP 47 tag, restricted or not.

The language features are SQL (`features.sql.LANGUAGE`); these parse the tags, on their
distinct values only, into the `language_tags` table the queries join.
"""

from __future__ import annotations

import re

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
