"""Country facts the generator needs: local language, browser tag, time zone, e-mail habits."""

from __future__ import annotations

from exportguard.features.policy import DEFAULT_UTC_OFFSETS

#: Restricted countries of the simulated provider (the operators of circumvention live here).
RESTRICTED = ("CN", "RU", "IR", "KP", "SY", "CU", "BY")

LOCAL_LANG = {
    "US": "en", "GB": "en", "AU": "en", "CA": "en", "IE": "en", "NZ": "en", "NG": "en",
    "ZA": "en", "PH": "en", "IN": "en", "SG": "en", "PK": "en", "DE": "de", "CH": "de",
    "AT": "de", "FR": "fr", "BE": "fr", "ES": "es", "MX": "es", "AR": "es", "CL": "es",
    "CO": "es", "BR": "pt", "PT": "pt", "JP": "ja", "KR": "ko", "TW": "zh", "HK": "zh",
    "MO": "zh", "CN": "zh", "MY": "ms", "RU": "ru", "BY": "ru", "KZ": "ru", "KG": "ru",
    "UA": "uk", "IR": "fa", "ID": "id", "VN": "vi", "TR": "tr", "TH": "th", "PL": "pl",
    "IT": "it", "NL": "nl", "IL": "he", "AE": "ar", "EG": "ar", "SA": "ar", "SE": "sv",
    "AM": "hy", "GE": "ka", "EE": "et", "CU": "es", "SY": "ar", "KP": "ko",
}  # fmt: skip

BROWSER_TAG = {
    "en": "en-US", "de": "de-DE", "fr": "fr-FR", "es": "es-ES", "pt": "pt-BR", "ja": "ja-JP",
    "ko": "ko-KR", "zh": "zh-CN", "ms": "ms-MY", "ru": "ru-RU", "uk": "uk-UA", "fa": "fa-IR",
    "id": "id-ID", "vi": "vi-VN", "tr": "tr-TR", "th": "th-TH", "pl": "pl-PL", "it": "it-IT",
    "nl": "nl-NL", "he": "he-IL", "ar": "ar-AE", "sv": "sv-SE", "hy": "hy-AM", "ka": "ka-GE",
    "et": "et-EE",
}  # fmt: skip
#: Country-specific browser tags where the language tag alone would mislead.
COUNTRY_TAG = {"TW": "zh-TW", "HK": "zh-HK", "MO": "zh-HK", "SG": "en-SG", "GB": "en-GB",
               "AU": "en-AU", "IN": "en-IN", "CA": "en-CA", "MX": "es-MX", "BR": "pt-BR"}  # fmt: skip

UTC_OFFSET = {**DEFAULT_UTC_OFFSETS, "IE": 0.0, "VG": -4.0, "NZ": 12.0}

FREEMAIL_BY_COUNTRY: dict[str, dict[str, float]] = {
    "CN": {"qq.com": 4, "163.com": 3, "126.com": 1, "gmail.com": 1.5, "outlook.com": 1, "foxmail.com": 0.5},
    "RU": {"yandex.ru": 3, "mail.ru": 3, "gmail.com": 2, "proton.me": 0.5},
    "BY": {"yandex.ru": 2, "mail.ru": 2, "gmail.com": 2},
    "IR": {"gmail.com": 4, "yahoo.com": 2, "outlook.com": 1},
    "TW": {"gmail.com": 4, "yahoo.com": 1.5, "outlook.com": 1},
    "HK": {"gmail.com": 4, "yahoo.com": 1, "outlook.com": 1, "qq.com": 0.5, "163.com": 0.3},
    "KZ": {"gmail.com": 3, "mail.ru": 2, "yandex.ru": 1},
}  # fmt: skip
FREEMAIL_DEFAULT = {"gmail.com": 6, "outlook.com": 2, "hotmail.com": 1, "yahoo.com": 1,
                    "icloud.com": 1, "proton.me": 0.4}  # fmt: skip
CAREFUL_FREEMAIL = {"gmail.com": 6, "outlook.com": 3, "proton.me": 1, "icloud.com": 1}

TLD = {"US": ".com", "GB": ".co.uk", "DE": ".de", "FR": ".fr", "JP": ".co.jp", "SG": ".com.sg",
       "HK": ".com.hk", "MY": ".com.my", "AE": ".ae", "CN": ".cn", "TW": ".com.tw", "IN": ".in",
       "AU": ".com.au", "CA": ".ca", "KR": ".co.kr", "NL": ".nl", "CH": ".ch", "KZ": ".kz"}  # fmt: skip


def local_lang(country: str) -> str:
    return LOCAL_LANG.get(country, "en")


def browser_tag(country: str) -> str:
    """The usual browser language of someone living in `country`."""
    return COUNTRY_TAG.get(country) or BROWSER_TAG.get(local_lang(country), "en-US")


def offset_hours(country: str) -> float:
    return UTC_OFFSET.get(country, 0.0)
