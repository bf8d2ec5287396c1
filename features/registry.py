"""The one declared feature list: training, the endpoint, batch rescoring and reasons read it.

Each feature is grounded in a published red flag (see ../shared/domain-notes.md) and is
computed only from contract columns. `monotone=+1` marks features where more of the
signal must never lower risk (the model is constrained accordingly); `fmt` says how a
value is rendered in a reason sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAMILIES = (
    "traffic_geo",
    "timezone",
    "language",
    "reseller",
    "payments",
    "org",
    "graph",
    "lifecycle",
    "network_mix",
    "language_mix",
    "rhythm",
)


@dataclass(frozen=True)
class Feature:
    name: str
    family: str
    doc: str
    monotone: int = 0
    fmt: str = "num"  # share (0-1 shown as %), num, int, bool, hours, days

    def describe(self, value: float | None) -> str:
        """A plain-language sentence for an analyst: the doc with the value filled in.

        A missing value (None or NaN) is said to be missing, not given a made-up reading:
        the model scores missingness itself, so the sentence says that the absence moved it.
        """
        if value is None or value != value:
            return f"{self.label} was not provided (the missing value itself moved the score)"
        return self.doc.format(value=render_value(self.fmt, value))

    @property
    def label(self) -> str:
        """The feature's name in words ("account_age_days" -> "account age (days)")."""
        words = self.name.split("_")
        unit = {"days": "days", "hours": "hours", "30d": "last 30 days", "90d": "last 90 days",
                "7d": "last 7 days", "all": "all time"}.get(words[-1])  # fmt: skip
        if unit is not None and len(words) > 1:
            return f"{' '.join(words[:-1])} ({unit})"
        return " ".join(words)


#: Largest magnitude a feature value may take: far below the model matrix's missing sentinel
#: (-1e9), so a real value can never be mistaken for "missing".
MAX_ABS = 1.0e8


def feature_bounds(feature: Feature) -> tuple[float, float]:
    """Inclusive (low, high) range of a feature's values, from its format; HTTP and batch share it."""
    if feature.fmt in ("share", "bool"):
        return 0.0, 1.0
    if feature.fmt == "int":
        return 0.0, MAX_ABS
    if feature.fmt == "hours":
        return -24.0, 24.0
    return -MAX_ABS, MAX_ABS


def render_value(fmt: str, value: float | None) -> str:
    """Render a feature value for a reason sentence."""
    if value is None or value != value:  # None or NaN
        return "unknown"
    if fmt == "share":
        return f"{100.0 * value:.0f}%"
    if fmt == "int":
        return f"{value:.0f}"
    if fmt == "bool":
        return "yes" if value >= 0.5 else "no"
    if fmt == "hours":
        return f"{value:.1f} h"
    if fmt == "days":
        return f"{value:.0f} days"
    return f"{value:.3g}"


#: printf patterns that render exactly as `render_value` does (same float formatting)
_PATTERNS = {"share": "%.0f%%", "int": "%.0f", "hours": "%.1f h", "days": "%.0f days"}


def render_values(fmt: str, values: np.ndarray) -> np.ndarray:
    """`render_value` of many present (non-NaN) values at once: an array of str.

    %-formatting and format() share CPython's float formatting, so each string equals
    `render_value(fmt, v)` (tests/unit/test_reason_sentences.py checks edge cases).
    """
    values = np.asarray(values, dtype=np.float64)
    if fmt == "bool":
        return np.where(values >= 0.5, "yes", "no").astype(object)
    if fmt == "share":
        values = 100.0 * values
    return np.char.mod(_PATTERNS.get(fmt, "%.3g"), values).astype(object)


FEATURES: tuple[Feature, ...] = (
    # --- traffic geography -------------------------------------------------------------
    Feature(
        "restricted_traffic_share_30d",
        "traffic_geo",
        "{value} of API requests in the last 30 days came from restricted countries",
        +1,
        "share",
    ),
    Feature(
        "restricted_traffic_share_all",
        "traffic_geo",
        "{value} of all API requests so far came from restricted countries",
        +1,
        "share",
    ),
    Feature(
        "intermediary_traffic_share_30d",
        "traffic_geo",
        "{value} of API requests in the last 30 days came from intermediary jurisdictions",
        0,
        "share",
    ),
    Feature(
        "hosting_traffic_share_30d",
        "traffic_geo",
        "{value} of API requests in the last 30 days came from hosting (data-centre) networks",
        0,
        "share",
    ),
    Feature(
        "vpn_tor_traffic_share_30d",
        "traffic_geo",
        "{value} of API requests in the last 30 days came through VPN/proxy or Tor networks",
        0,
        "share",
    ),
    Feature(
        "declared_country_mismatch_30d",
        "traffic_geo",
        "{value} of API requests in the last 30 days came from outside the declared country",
        0,
        "share",
    ),
    Feature(
        "traffic_country_entropy_30d",
        "traffic_geo",
        "API traffic in the last 30 days was spread over countries with entropy {value} bits",
        0,
        "num",
    ),
    Feature(
        "distinct_asns_30d",
        "traffic_geo",
        "API traffic in the last 30 days came from {value} distinct networks (ASNs)",
        0,
        "int",
    ),
    Feature(
        "login_restricted_share",
        "traffic_geo",
        "{value} of console logins came from restricted countries",
        +1,
        "share",
    ),
    Feature(
        "console_api_country_divergence",
        "traffic_geo",
        "console logins and API traffic come from different country mixes (divergence {value})",
        0,
        "num",
    ),
    Feature(
        "signup_ip_restricted",
        "traffic_geo",
        "sign-up IP located in a restricted country: {value}",
        +1,
        "bool",
    ),
    Feature(
        "billing_declared_mismatch",
        "traffic_geo",
        "billing country differs from the declared country: {value}",
        0,
        "bool",
    ),
    # --- time zone -----------------------------------------------------------------------
    Feature(
        "activity_tz_gap_hours",
        "timezone",
        "the daily activity rhythm is {value} away from the declared country's time zone",
        0,
        "hours",
    ),
    Feature(
        "utc8_rhythm_excess",
        "timezone",
        "the activity rhythm fits a UTC+8 working day better than the declared time zone by {value}",
        0,
        "num",
    ),
    Feature(
        "browser_tz_mismatch_share",
        "timezone",
        "{value} of console logins had a browser time zone unlike the declared country's",
        0,
        "share",
    ),
    Feature(
        "browser_tz_restricted_share",
        "timezone",
        "{value} of console logins had a browser time zone of a restricted country but not of the declared one",
        0,
        "share",
    ),
    # --- language --------------------------------------------------------------------------
    Feature(
        "restricted_language_share_30d",
        "language",
        "{value} of prompt traffic in the last 30 days was in a restricted-region language",
        0,
        "share",
    ),
    Feature(
        "unexpected_restricted_language_share_30d",
        "language",
        "{value} of prompt traffic in the last 30 days was in a restricted-region language not usual in the declared country",
        0,
        "share",
    ),
    Feature(
        "browser_language_restricted_share",
        "language",
        "{value} of console logins used a browser language of a restricted region (e.g. zh-CN, ru-RU)",
        0,
        "share",
    ),
    # --- reseller / volume -------------------------------------------------------------------
    Feature(
        "api_keys_30d",
        "reseller",
        "{value} distinct API keys were used in the last 30 days",
        0,
        "int",
    ),
    Feature(
        "max_hourly_end_users_30d",
        "reseller",
        "up to {value} distinct end users were served in one hour in the last 30 days",
        0,
        "int",
    ),
    Feature(
        "end_users_per_active_hour_30d",
        "reseller",
        "on average {value} distinct end users per active hour in the last 30 days",
        0,
        "num",
    ),
    Feature(
        "log_tokens_30d",
        "reseller",
        "token volume in the last 30 days was {value} on a log scale (ln(1+tokens))",
        0,
        "num",
    ),
    Feature(
        "token_growth_30d",
        "reseller",
        "token volume changed by a log-ratio of {value} from the previous 30 days to the last 30",
        0,
        "num",
    ),
    Feature(
        "hour_of_week_entropy_30d",
        "reseller",
        "traffic covered the week's 168 hours with normalised entropy {value} (1 = flat 24x7 traffic)",
        0,
        "num",
    ),
    Feature(
        "active_hour_share_30d",
        "reseller",
        "the account was active in {value} of the hours of the last 30 days",
        0,
        "share",
    ),
    Feature(
        "ip_prefixes_30d",
        "reseller",
        "API traffic in the last 30 days came from {value} distinct network prefixes",
        0,
        "int",
    ),
    # --- payments -------------------------------------------------------------------------------
    Feature(
        "issuer_country_mismatch_share",
        "payments",
        "{value} of payment attempts used an instrument issued outside both the declared and the billing country",
        0,
        "share",
    ),
    Feature(
        "restricted_issuer_share",
        "payments",
        "{value} of payment attempts used an instrument issued in a restricted country",
        +1,
        "share",
    ),
    Feature(
        "intermediary_issuer_share",
        "payments",
        "{value} of payment attempts used an instrument issued in an intermediary jurisdiction",
        0,
        "share",
    ),
    Feature(
        "prepaid_crypto_amount_share",
        "payments",
        "{value} of the amount paid came from prepaid cards or crypto",
        0,
        "share",
    ),
    Feature("failed_payment_rate", "payments", "{value} of payment attempts failed", 0, "share"),
    Feature(
        "disputed_refunded_rate",
        "payments",
        "{value} of payment attempts were disputed or refunded",
        0,
        "share",
    ),
    Feature(
        "distinct_instruments_90d",
        "payments",
        "{value} distinct payment instruments were used in the last 90 days",
        0,
        "int",
    ),
    # --- organisation ------------------------------------------------------------------------------
    Feature(
        "incorporation_age_at_signup_days",
        "org",
        "the organisation was incorporated {value} before the account signed up",
        0,
        "days",
    ),
    Feature(
        "incorporated_in_intermediary",
        "org",
        "the organisation is incorporated in an intermediary jurisdiction: {value}",
        0,
        "bool",
    ),
    Feature(
        "restricted_ownership_effective",
        "org",
        "restricted-country persons or companies own {value} of the organisation (aggregated through ownership chains)",
        +1,
        "share",
    ),
    Feature(
        "restricted_ownership_max_direct",
        "org",
        "the largest direct stake held by a restricted-country owner is {value}",
        +1,
        "share",
    ),
    Feature(
        "orgs_at_registered_address",
        "org",
        "{value} organisations share this organisation's registered address",
        0,
        "int",
    ),
    Feature(
        "restricted_entity_name_similarity",
        "org",
        "the organisation's or an owner's name resembles a listed restricted entity (similarity {value})",
        +1,
        "share",
    ),
    Feature(
        "freemail_organization",
        "org",
        "an organisation account registered with a free e-mail domain: {value}",
        0,
        "bool",
    ),
    # --- graph links ----------------------------------------------------------------------------------
    Feature(
        "linked_component_size",
        "graph",
        "{value} accounts are linked to this one through shared devices, payment instruments, network prefixes or registered addresses",
        0,
        "int",
    ),
    Feature(
        "shared_device_accounts",
        "graph",
        "{value} other accounts logged in from the same devices",
        0,
        "int",
    ),
    Feature(
        "shared_instrument_accounts",
        "graph",
        "{value} other accounts paid with the same payment instruments",
        0,
        "int",
    ),
    Feature(
        "linked_confirmed_positives",
        "graph",
        "{value} linked accounts were confirmed as circumvention before this time",
        +1,
        "int",
    ),
    # --- lifecycle ---------------------------------------------------------------------------------------
    Feature("account_age_days", "lifecycle", "the account is {value} old", 0, "days"),
    Feature(
        "days_to_first_10m_tokens",
        "lifecycle",
        "the account reached 10 million tokens {value} after sign-up (fast ramp)",
        0,
        "days",
    ),
    Feature(
        "dormant_then_spike_ratio",
        "lifecycle",
        "after a quiet period, weekly traffic spiked to {value} times its usual level",
        0,
        "num",
    ),
    Feature(
        "research_exemption",
        "lifecycle",
        "the account claims a research or humanitarian exemption: {value}",
        0,
        "bool",
    ),
    Feature(
        "is_channel_partner",
        "lifecycle",
        "the account is an approved channel partner: {value}",
        0,
        "bool",
    ),
    Feature(
        "is_organization", "lifecycle", "the account is an organisation account: {value}", 0, "bool"
    ),
)

_NETWORK_WORDS = {
    "residential": "residential broadband",
    "mobile": "mobile",
    "business": "business",
    "hosting": "hosting (data-centre)",
    "vpn_proxy": "VPN/proxy",
    "tor": "Tor",
    "unknown": "unclassified",
}
_LANGUAGE_WORDS = {
    "en": "English", "zh": "Chinese", "ru": "Russian", "fa": "Persian", "es": "Spanish",
    "pt": "Portuguese", "fr": "French", "de": "German", "ja": "Japanese", "ko": "Korean",
    "ar": "Arabic", "vi": "Vietnamese",
}  # fmt: skip


def _distribution_features() -> tuple[Feature, ...]:
    """The profile features and the added red flags (defined in features/sql.py)."""
    from exportguard.features.vocabulary import (
        LOGIN_NETWORK_TYPES,
        NETWORK_TYPES,
        PROFILE_LANGUAGES,
    )

    out = [
        Feature(
            f"api_network_{t}_share_90d",
            "network_mix",
            f"{{value}} of API requests in the last 90 days came through {_NETWORK_WORDS[t]} networks",
            0,
            "share",
        )
        for t in NETWORK_TYPES
    ]
    out += [
        Feature(
            f"login_network_{t}_share_90d",
            "network_mix",
            f"{{value}} of console logins in the last 90 days came through {_NETWORK_WORDS[t]} networks",
            0,
            "share",
        )
        for t in LOGIN_NETWORK_TYPES
    ]
    out += [
        Feature(
            f"prompt_language_{code}_share_90d",
            "language_mix",
            f"{{value}} of prompt traffic in the last 90 days was in {_LANGUAGE_WORDS[code]}",
            0,
            "share",
        )
        for code in PROFILE_LANGUAGES
    ]
    out += [
        Feature(
            "local_night_traffic_share_90d",
            "rhythm",
            "{value} of API requests in the last 90 days came at night (00-06) in the declared country's time",
            0,
            "share",
        ),
        Feature(
            "local_work_traffic_share_90d",
            "rhythm",
            "{value} of API requests in the last 90 days came in working hours (09-18) of the declared country",
            0,
            "share",
        ),
        Feature(
            "local_evening_traffic_share_90d",
            "rhythm",
            "{value} of API requests in the last 90 days came in the evening (18-24) of the declared country",
            0,
            "share",
        ),
        Feature(
            "rhythm_strength_90d",
            "rhythm",
            "the daily rhythm of API traffic has strength {value} (0 = flat round the clock, 1 = one tight burst)",
            0,
            "share",
        ),
        Feature(
            "login_local_night_share_90d",
            "rhythm",
            "{value} of console logins in the last 90 days came at night (00-06) in the declared country's time",
            0,
            "share",
        ),
        Feature(
            "restricted_operator_traffic_share_90d",
            "traffic_geo",
            "{value} of API requests in the last 90 days came through networks of operators "
            "headquartered in restricted countries",
            +1,
            "share",
        ),
        Feature(
            "intermediary_residential_share_90d",
            "traffic_geo",
            "{value} of located API requests in the last 90 days exited through residential or "
            "mobile networks in intermediary jurisdictions",
            0,
            "share",
        ),
        Feature(
            "login_anonymised_share_90d",
            "traffic_geo",
            "{value} of console logins in the last 90 days came through VPN/proxy, Tor or hosting networks",
            0,
            "share",
        ),
        Feature(
            "round_amount_payment_share",
            "payments",
            "{value} of payments were round amounts (whole multiples of 50 USD)",
            0,
            "share",
        ),
        Feature(
            "prepaid_payment_count_share",
            "payments",
            "{value} of payments were made with prepaid cards",
            0,
            "share",
        ),
        Feature(
            "api_key_growth_30d",
            "reseller",
            "API keys in use grew by a log ratio of {value} over the previous 30 days",
            0,
            "num",
        ),
        Feature(
            "end_user_growth_30d",
            "reseller",
            "end users served grew by a log ratio of {value} over the previous 30 days",
            0,
            "num",
        ),
    ]
    return tuple(out)


FEATURES = FEATURES + _distribution_features()
#: The families added for detection quality (issue 12), ablated in docs/training.md.
ADDED_FAMILIES = ("network_mix", "language_mix", "rhythm")
#: The added red flags inside the original families.
ADDED_FLAGS = (
    "restricted_operator_traffic_share_90d",
    "intermediary_residential_share_90d",
    "login_anonymised_share_90d",
    "round_amount_payment_share",
    "prepaid_payment_count_share",
    "api_key_growth_30d",
    "end_user_growth_30d",
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
