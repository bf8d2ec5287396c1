"""Who lives in the synthetic world: circumvention archetypes and their innocent twins.

Each archetype is data, not code: where the customer declares to be, where the operator
really is, how the traffic is routed, what it pays with. Positives and their twins draw
from overlapping ranges on purpose, so no single column separates them (domain notes §4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: Ordinary customers' declared countries (intermediary jurisdictions included on purpose).
WORLD = {
    "US": 30, "IN": 8, "GB": 6, "DE": 6, "FR": 4, "BR": 4, "CA": 4, "JP": 4, "KR": 3,
    "AU": 3, "NL": 2, "ES": 2, "IT": 2, "PL": 2, "SG": 2, "MX": 2, "ID": 2, "TR": 2,
    "VN": 1, "PH": 1, "NG": 1, "TW": 1.5, "HK": 1, "MY": 1, "AE": 1, "IL": 1, "SE": 1,
    "CH": 1, "UA": 1, "ZA": 1, "TH": 1, "KZ": 0.5, "AR": 1, "EG": 0.5, "PK": 0.5,
}  # fmt: skip
HUBS = {"SG": 4, "HK": 4, "MY": 2, "AE": 2}
VPN_EXITS = {"US": 4, "NL": 2, "DE": 2, "JP": 2, "SG": 2, "HK": 2, "GB": 1, "CH": 1}
CLOUD_REGIONS = {"US": 5, "DE": 2, "IE": 2, "SG": 2, "JP": 2, "HK": 1, "GB": 1, "NL": 1}
RELAY_REGIONS = {"HK": 4, "SG": 3, "JP": 3, "US": 2, "MY": 1, "KR": 1}

#: Network-type mixes of a routing slot.
HOME = {"residential": 0.55, "mobile": 0.25, "business": 0.15, "unknown": 0.05}
OFFICE = {"business": 0.7, "residential": 0.15, "hosting": 0.1, "unknown": 0.05}
CLOUD = {"hosting": 0.9, "business": 0.05, "unknown": 0.05}
VPN = {"vpn_proxy": 0.65, "hosting": 0.2, "residential": 0.1, "unknown": 0.05}
RESI_PROXY = {"residential": 0.75, "mobile": 0.15, "vpn_proxy": 0.05, "unknown": 0.05}
MOBILE = {"mobile": 0.6, "residential": 0.3, "unknown": 0.1}


@dataclass(frozen=True)
class Slot:
    """One place traffic comes from: weight range, where, on what kind of network, which pool."""

    weight: tuple[float, float]
    country: str | Mapping[str, float]  # "declared", "operator", or a country mix
    net: Mapping[str, float]
    pool: str = "own"  # own | vpn | cloud | ring | campus


@dataclass(frozen=True)
class Spec:
    """An archetype: one kind of customer, described by the ranges it draws from."""

    name: str
    weight: float
    typology: str | None = None
    careful: str | None = None  # the careful-evader variant this archetype turns into
    org: float = 0.0  # probability the account is an organisation
    org_kind: str = "normal"  # normal | shell | local | university | partner
    declared: dict[str, float] = field(default_factory=lambda: dict(WORLD))
    operator: str | dict[str, float] = "declared"
    tiers: dict[str, float] = field(
        default_factory=lambda: {"free": 0.45, "build": 0.45, "scale": 0.08, "enterprise": 0.02}
    )
    freemail: float = 0.8
    rows_per_day: tuple[float, float] = (0.28, 0.9)  # lognormal median, sigma
    keys: tuple[int, int] = (1, 2)
    flat: tuple[float, float] = (0.0, 0.3)
    end_users: tuple[float, float] = (0.0, 0.0)  # P(sends ids), median distinct per hour
    lang: dict[str, float] = field(default_factory=lambda: {"local": 0.35, "en": 0.65})
    lang_share: tuple[float, float] = (0.6, 0.95)
    slots: tuple[Slot, ...] = (
        Slot((0.7, 1.0), "declared", HOME),
        Slot((0.0, 0.3), "declared", MOBILE),
    )
    tz: str = "operator"  # browser time zone: operator | declared
    browser_lang: str = "operator"  # operator | declared | en
    pay: dict[str, float] = field(
        default_factory=lambda: {"card": 0.9, "wallet": 0.06, "prepaid_card": 0.03, "crypto": 0.01}
    )
    issuer: str | dict[str, float] = "declared"
    fail: float = 0.05
    dispute: float = 0.005
    exemption: float = 0.003
    partner: float = 0.0
    ring: tuple[int, int] = (1, 1)  # accounts per operator (farms share devices and cards)
    growth: tuple[float, float] = (0.8, 1.3)  # >1 = activity grows over time
    leak: float = 0.0  # share of traffic that leaks the operator's real (restricted) country


_ZH_OPS = {"CN": 1.0}
_PROXY_OPS = {"CN": 6, "RU": 3, "IR": 1.5, "BY": 0.5}
_CORP = {"bank_transfer": 0.45, "invoice": 0.25, "card": 0.3}

SPECS: tuple[Spec, ...] = (
    # ---- circumvention ---------------------------------------------------------------
    Spec("relay_reseller", 0.0045, "reseller", careful="careful_evader_reseller", org=0.5,
         declared={"HK": 3, "SG": 3, "US": 2, "MY": 1, "JP": 1, "GB": 0.5}, operator=_ZH_OPS,
         tiers={"build": 0.4, "scale": 0.5, "enterprise": 0.1}, freemail=0.6,
         rows_per_day=(8.0, 1.0), keys=(3, 40), flat=(0.3, 0.8), end_users=(0.8, 25.0),
         lang={"zh": 0.85, "en": 0.15}, lang_share=(0.5, 0.9),
         slots=(Slot((0.6, 1.0), RELAY_REGIONS, CLOUD, "ring"), Slot((0.0, 0.3), RELAY_REGIONS, CLOUD, "cloud"),
                Slot((0.0, 0.15), HUBS, VPN, "vpn")),
         pay={"prepaid_card": 0.35, "crypto": 0.25, "wallet": 0.2, "card": 0.2},
         issuer={"HK": 4, "SG": 2, "CN": 1.5, "US": 1, "MY": 1}, fail=0.12, dispute=0.03,
         ring=(1, 8), growth=(1.3, 2.5), leak=0.04),
    Spec("careful_evader_reseller", 0.0, "reseller", org=0.6,
         declared={"SG": 3, "US": 3, "GB": 1, "JP": 1, "MY": 1, "AU": 1}, operator=_ZH_OPS,
         tiers={"build": 0.5, "scale": 0.45, "enterprise": 0.05}, freemail=0.3,
         rows_per_day=(5.0, 1.0), keys=(2, 12), flat=(0.2, 0.6), end_users=(0.15, 8.0),
         lang={"zh": 0.5, "en": 0.5}, lang_share=(0.4, 0.8),
         slots=(Slot((0.5, 1.0), "declared", RESI_PROXY, "ring"), Slot((0.0, 0.5), RELAY_REGIONS, CLOUD, "cloud")),
         tz="declared", browser_lang="en", pay={"card": 0.8, "bank_transfer": 0.1, "wallet": 0.1},
         ring=(1, 4), growth=(1.2, 2.0), leak=0.005),
    Spec("shell_company", 0.0045, "shell_company", careful="careful_evader_shell", org=1.0,
         org_kind="shell", declared={"SG": 4, "HK": 4, "MY": 1.5, "AE": 1.5}, operator=_ZH_OPS,
         tiers={"build": 0.3, "scale": 0.5, "enterprise": 0.2}, freemail=0.35,
         rows_per_day=(2.0, 1.0), keys=(1, 10), flat=(0.1, 0.4), end_users=(0.2, 3.0),
         lang={"zh": 0.6, "en": 0.4}, lang_share=(0.5, 0.9),
         slots=(Slot((0.5, 1.0), "declared", OFFICE), Slot((0.0, 0.4), RELAY_REGIONS, CLOUD, "cloud"),
                Slot((0.0, 0.2), HUBS, VPN, "vpn")),
         pay=_CORP, issuer={"HK": 3, "SG": 3, "MY": 1, "AE": 1, "CN": 0.5}, fail=0.06,
         ring=(1, 3), growth=(1.0, 1.8), leak=0.05),
    Spec("careful_evader_shell", 0.0, "shell_company", org=1.0, org_kind="shell",
         declared={"SG": 4, "HK": 2, "MY": 1.5, "AE": 2}, operator=_ZH_OPS,
         tiers={"build": 0.35, "scale": 0.5, "enterprise": 0.15}, freemail=0.15,
         rows_per_day=(1.5, 1.0), keys=(1, 6), flat=(0.1, 0.4), end_users=(0.1, 2.0),
         lang={"zh": 0.35, "en": 0.65}, slots=(Slot((0.6, 1.0), "declared", OFFICE), Slot((0.0, 0.4), CLOUD_REGIONS, CLOUD, "cloud")),
         tz="declared", browser_lang="en", pay=_CORP, issuer="declared", leak=0.01),
    Spec("proxy_individual", 0.008, "proxy_access", careful="careful_evader_proxy",
         declared={"US": 4, "SG": 2, "HK": 2, "JP": 1, "GB": 1, "DE": 1, "TR": 0.5, "KZ": 0.5},
         operator=_PROXY_OPS, tiers={"free": 0.3, "build": 0.6, "scale": 0.1}, freemail=0.95,
         rows_per_day=(0.5, 0.9), lang={"op": 0.75, "en": 0.25}, lang_share=(0.55, 0.95),
         slots=(Slot((0.7, 1.0), VPN_EXITS, VPN, "vpn"), Slot((0.0, 0.3), VPN_EXITS, RESI_PROXY)),
         pay={"prepaid_card": 0.35, "card": 0.35, "wallet": 0.2, "crypto": 0.1},
         issuer={"HK": 2, "US": 2, "SG": 1, "TR": 1, "KZ": 1, "AE": 0.5, "CN": 0.5}, fail=0.15,
         dispute=0.02, leak=0.08),
    Spec("careful_evader_proxy", 0.0, "proxy_access",
         declared={"US": 4, "SG": 1, "GB": 1, "DE": 1, "JP": 1, "CA": 1}, operator=_PROXY_OPS,
         tiers={"free": 0.2, "build": 0.7, "scale": 0.1}, freemail=0.9,
         lang={"op": 0.35, "en": 0.65}, lang_share=(0.5, 0.9),
         slots=(Slot((0.8, 1.0), "declared", RESI_PROXY), Slot((0.0, 0.2), "declared", MOBILE)),
         tz="declared", browser_lang="en", pay={"card": 0.8, "wallet": 0.15, "prepaid_card": 0.05},
         issuer="declared", fail=0.08, leak=0.005),
    Spec("exemption_abuser", 0.003, "exemption_abuse", org=0.8, org_kind="university",
         declared={"HK": 2, "SG": 2, "US": 1, "GB": 1, "MY": 1, "AE": 1, "KZ": 0.5},
         operator={"CN": 3, "RU": 1, "IR": 1}, tiers={"build": 0.4, "scale": 0.4, "enterprise": 0.2},
         freemail=0.4, rows_per_day=(4.0, 1.0), keys=(2, 15), flat=(0.2, 0.6), end_users=(0.3, 6.0),
         lang={"op": 0.6, "en": 0.4}, slots=(Slot((0.5, 1.0), "declared", OFFICE, "campus"),
         Slot((0.0, 0.5), RELAY_REGIONS, CLOUD, "cloud"), Slot((0.0, 0.2), VPN_EXITS, VPN, "vpn")),
         pay={"invoice": 0.4, "bank_transfer": 0.3, "card": 0.2, "prepaid_card": 0.1},
         issuer={"HK": 2, "SG": 1, "US": 1, "CN": 0.5, "AE": 0.5}, exemption=1.0,
         growth=(1.5, 3.0), leak=0.06),
    # ---- innocent twins --------------------------------------------------------------
    Spec("normal_individual", 0.52),
    Spec("normal_business", 0.16, org=1.0, freemail=0.15, rows_per_day=(1.0, 1.0), keys=(1, 5),
         tiers={"free": 0.15, "build": 0.55, "scale": 0.25, "enterprise": 0.05},
         slots=(Slot((0.6, 1.0), "declared", OFFICE), Slot((0.0, 0.4), CLOUD_REGIONS, CLOUD, "cloud")),
         pay={"card": 0.6, "invoice": 0.2, "bank_transfer": 0.15, "wallet": 0.05}),
    Spec("zh_dev_tw", 0.025, declared={"TW": 6, "HK": 2, "MO": 0.3}, operator="declared",
         freemail=0.7, lang={"zh": 0.7, "en": 0.3}, browser_lang="declared",
         pay={"card": 0.8, "wallet": 0.12, "prepaid_card": 0.08}),
    Spec("zh_dev_abroad", 0.025, declared={"SG": 3, "MY": 2, "US": 3, "CA": 1, "AU": 1, "GB": 0.5},
         lang={"zh": 0.6, "en": 0.4}, browser_lang="zh", freemail=0.8,
         slots=(Slot((0.7, 1.0), "declared", HOME), Slot((0.0, 0.3), VPN_EXITS, VPN, "vpn")),
         pay={"card": 0.75, "wallet": 0.15, "prepaid_card": 0.1}, issuer={"declared": 4, "HK": 1, "SG": 0.5},
         leak=0.01),
    Spec("hk_cross_border", 0.006, declared={"HK": 4, "MO": 1}, lang={"zh": 0.75, "en": 0.25},
         browser_lang="declared", slots=(Slot((0.6, 0.95), "declared", HOME),
         Slot((0.05, 0.35), {"CN": 1.0}, MOBILE)), pay={"card": 0.7, "wallet": 0.3},
         issuer={"HK": 5, "CN": 1}),
    Spec("cn_student_abroad", 0.01, declared={"US": 3, "GB": 2, "AU": 2, "CA": 2, "SG": 1, "JP": 1},
         lang={"zh": 0.65, "en": 0.35}, browser_lang="zh", freemail=0.9,
         slots=(Slot((0.6, 1.0), "declared", HOME), Slot((0.0, 0.3), VPN_EXITS, VPN, "vpn")),
         pay={"card": 0.6, "wallet": 0.3, "prepaid_card": 0.1}, issuer={"CN": 2, "HK": 1, "US": 1},
         leak=0.03),
    Spec("legit_sg_hk_company", 0.03, org=1.0, org_kind="local", declared=dict(HUBS), freemail=0.1,
         tiers={"build": 0.5, "scale": 0.4, "enterprise": 0.1}, rows_per_day=(1.5, 1.0), keys=(1, 8),
         lang={"zh": 0.35, "en": 0.65}, slots=(Slot((0.5, 1.0), "declared", OFFICE),
         Slot((0.0, 0.5), CLOUD_REGIONS, CLOUD, "cloud")), pay=_CORP),
    Spec("legit_channel_partner", 0.004, org=1.0, org_kind="partner", partner=1.0,
         declared={"US": 3, "SG": 2, "GB": 1, "DE": 1, "JP": 1, "HK": 1, "AE": 0.5}, freemail=0.05,
         tiers={"scale": 0.5, "enterprise": 0.5}, rows_per_day=(8.0, 1.0), keys=(3, 40),
         flat=(0.3, 0.8), end_users=(0.85, 25.0), lang={"local": 0.3, "en": 0.6, "zh": 0.1},
         slots=(Slot((0.6, 1.0), CLOUD_REGIONS, CLOUD, "cloud"), Slot((0.0, 0.4), "declared", OFFICE)),
         pay=_CORP, growth=(1.1, 2.0)),
    Spec("dev_agency", 0.006, org=1.0, freemail=0.2, rows_per_day=(3.0, 1.0), keys=(2, 15),
         tiers={"build": 0.5, "scale": 0.5}, flat=(0.2, 0.6), end_users=(0.5, 6.0),
         declared={"US": 2, "SG": 2, "HK": 1, "MY": 1, "IN": 2, "VN": 1, "GB": 1, "UA": 1},
         lang={"local": 0.3, "en": 0.5, "zh": 0.2}, slots=(Slot((0.5, 1.0), CLOUD_REGIONS, CLOUD, "ring"),
         Slot((0.0, 0.5), "declared", OFFICE, "ring")), pay={"card": 0.5, "wallet": 0.2,
         "prepaid_card": 0.15, "bank_transfer": 0.15}, issuer={"declared": 4, "HK": 1, "SG": 1, "US": 1},
         ring=(2, 8), growth=(1.0, 2.0)),
    Spec("cloud_business", 0.05, org=0.9, freemail=0.1, rows_per_day=(2.5, 1.0), keys=(1, 12),
         tiers={"build": 0.4, "scale": 0.45, "enterprise": 0.15}, flat=(0.4, 0.9),
         end_users=(0.4, 4.0), slots=(Slot((0.5, 1.0), CLOUD_REGIONS, CLOUD, "cloud"),
         Slot((0.0, 0.5), CLOUD_REGIONS, CLOUD, "cloud")), pay=_CORP | {"card": 0.5}),
    Spec("vpn_user", 0.06, slots=(Slot((0.4, 1.0), VPN_EXITS, VPN, "vpn"), Slot((0.0, 0.6), "declared", HOME))),
    Spec("traveller", 0.04, slots=(Slot((0.5, 0.9), "declared", HOME),
         Slot((0.05, 0.4), {"CN": 2, "HK": 3, "AE": 2, "SG": 2, "JP": 2, "RU": 0.5, "TR": 1}, MOBILE),
         Slot((0.0, 0.2), VPN_EXITS, VPN, "vpn")), fail=0.08),
    Spec("university_exempt", 0.012, org=0.9, org_kind="university", freemail=0.1,
         declared={"US": 4, "GB": 2, "DE": 1, "SG": 1, "HK": 1, "CA": 1, "AU": 1, "JP": 1},
         rows_per_day=(1.5, 1.2), keys=(1, 10), lang={"local": 0.3, "en": 0.6, "zh": 0.1},
         slots=(Slot((0.6, 1.0), "declared", OFFICE, "campus"), Slot((0.0, 0.4), CLOUD_REGIONS, CLOUD, "cloud")),
         pay={"invoice": 0.5, "card": 0.4, "bank_transfer": 0.1}, exemption=0.95),
    Spec("startup_fast_growth", 0.02, org=0.8, freemail=0.4, rows_per_day=(2.0, 1.0), keys=(1, 10),
         tiers={"build": 0.6, "scale": 0.4}, flat=(0.2, 0.6), end_users=(0.5, 5.0),
         slots=(Slot((0.4, 1.0), CLOUD_REGIONS, CLOUD, "cloud"), Slot((0.0, 0.6), "declared", HOME)),
         pay={"card": 0.7, "prepaid_card": 0.1, "crypto": 0.05, "wallet": 0.15}, growth=(1.5, 3.0),
         exemption=0.02),
    Spec("ru_speaking_dev", 0.015, declared={"KZ": 2, "AM": 1, "GE": 1, "UA": 1, "EE": 0.5, "DE": 1, "US": 1, "IL": 0.5},
         lang={"ru": 0.6, "en": 0.4}, browser_lang="ru", tz="declared",
         slots=(Slot((0.6, 1.0), "declared", HOME), Slot((0.0, 0.4), VPN_EXITS, VPN, "vpn")), leak=0.01),
    Spec("fa_speaking_dev", 0.005, declared={"DE": 2, "US": 2, "CA": 2, "TR": 1, "AE": 1, "GB": 1},
         lang={"fa": 0.5, "en": 0.5}, browser_lang="fa", tz="declared",
         slots=(Slot((0.6, 1.0), "declared", HOME), Slot((0.0, 0.4), VPN_EXITS, VPN, "vpn")), leak=0.005),
)  # fmt: skip

BY_NAME = {s.name: s for s in SPECS}
#: Positive archetypes turn careful with this probability at the start / end of the timeline.
CAREFUL_SHARE = (0.05, 0.5)
