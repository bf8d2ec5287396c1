"""Policy: which countries are restricted or intermediary, and what is normal for a country.

Policy is configuration, not data (data contract, "Policy"). Feature code reads it only
through a `Policy` object, so a provider changes the lists in `params.yaml` (section
`policy`) without touching code. The defaults below are documented in the README.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Countries where the provider does not offer service (unsupported regions).
DEFAULT_RESTRICTED = ("CN", "RU", "IR", "KP", "SY", "CU", "BY")
#: Transshipment / intermediary jurisdictions named in export-control red-flag guidance.
DEFAULT_INTERMEDIARY = ("HK", "MO", "SG", "MY", "AE", "KZ", "KG", "AM", "TH", "VN", "TR")
#: ISO 639-1 prompt languages whose use is a (weak) red flag where not expected.
DEFAULT_RESTRICTED_LANGUAGES = ("zh", "ru", "fa")
#: Where a restricted language is an ordinary local language (not a red flag by itself).
DEFAULT_EXPECTED_LANGUAGES: dict[str, tuple[str, ...]] = {
    "zh": ("CN", "TW", "HK", "MO", "SG", "MY"),
    "ru": ("RU", "BY", "KZ", "KG", "UA", "AM", "UZ", "GE", "EE", "LV", "MD"),
    "fa": ("IR", "AF", "TJ"),
}
#: Standard UTC offset (hours) of a country's main population centre; DST is ignored.
DEFAULT_UTC_OFFSETS: dict[str, float] = {
    "US": -6.0,
    "CA": -5.0,
    "MX": -6.0,
    "BR": -3.0,
    "AR": -3.0,
    "CL": -4.0,
    "CO": -5.0,
    "GB": 0.0,
    "IE": 0.0,
    "PT": 0.0,
    "IS": 0.0,
    "FR": 1.0,
    "DE": 1.0,
    "NL": 1.0,
    "BE": 1.0,
    "ES": 1.0,
    "IT": 1.0,
    "CH": 1.0,
    "AT": 1.0,
    "SE": 1.0,
    "NO": 1.0,
    "DK": 1.0,
    "PL": 1.0,
    "CZ": 1.0,
    "FI": 2.0,
    "EE": 2.0,
    "LV": 2.0,
    "LT": 2.0,
    "UA": 2.0,
    "RO": 2.0,
    "GR": 2.0,
    "IL": 2.0,
    "EG": 2.0,
    "ZA": 2.0,
    "TR": 3.0,
    "RU": 3.0,
    "BY": 3.0,
    "SA": 3.0,
    "KE": 3.0,
    "AM": 4.0,
    "GE": 4.0,
    "AE": 4.0,
    "IR": 3.5,
    "AF": 4.5,
    "PK": 5.0,
    "UZ": 5.0,
    "TJ": 5.0,
    "KZ": 5.0,
    "KG": 6.0,
    "IN": 5.5,
    "BD": 6.0,
    "TH": 7.0,
    "VN": 7.0,
    "ID": 7.0,
    "MY": 8.0,
    "SG": 8.0,
    "CN": 8.0,
    "HK": 8.0,
    "MO": 8.0,
    "TW": 8.0,
    "PH": 8.0,
    "KR": 9.0,
    "KP": 9.0,
    "JP": 9.0,
    "AU": 10.0,
    "NZ": 12.0,
    "SY": 3.0,
    "CU": -5.0,
    "NG": 1.0,
    "MD": 2.0,
}
#: E-mail providers whose domain says nothing about an organisation.
DEFAULT_FREEMAIL = (
    "gmail.com",
    "outlook.com",
    "hotmail.com",
    "yahoo.com",
    "icloud.com",
    "proton.me",
    "protonmail.com",
    "qq.com",
    "163.com",
    "126.com",
    "yandex.ru",
    "mail.ru",
    "foxmail.com",
)


#: Autonomous systems of network operators headquartered in restricted countries (public
#: registry data): China Telecom (4134, 4809), China Unicom (4837, 9929), China Mobile
#: (9808, 56040, 58453), CERNET (4538), Rostelecom (12389), MTS (8359), VimpelCom (3216),
#: MegaFon (31133), TCI (58224), MCCI (197207), Irancell (44244), Star JV (131279),
#: Syrian Telecom (29256), ETECSA (27725), Beltelecom (6697).
DEFAULT_RESTRICTED_OPERATOR_ASNS = (
    4134, 4809, 4837, 9929, 9808, 56040, 58453, 4538, 12389, 8359, 3216, 31133,
    58224, 197207, 44244, 131279, 29256, 27725, 6697,
)  # fmt: skip


def _upper_codes(values: tuple[str, ...]) -> tuple[str, ...]:
    bad = [
        v
        for v in values
        if not (isinstance(v, str) and len(v) == 2 and v.isalpha() and v.isupper())
    ]
    if bad:
        raise ValueError(f"country codes must be ISO 3166-1 alpha-2 upper case, got {bad[:5]}")
    return tuple(values)


class Policy(BaseModel):
    """Export-control policy the features are computed against (frozen, typo-strict)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    restricted_countries: tuple[str, ...] = DEFAULT_RESTRICTED
    intermediary_countries: tuple[str, ...] = DEFAULT_INTERMEDIARY
    restricted_languages: tuple[str, ...] = DEFAULT_RESTRICTED_LANGUAGES
    expected_languages: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: dict(DEFAULT_EXPECTED_LANGUAGES)
    )
    utc_offsets: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_UTC_OFFSETS))
    freemail_domains: tuple[str, ...] = DEFAULT_FREEMAIL
    #: A network prefix seen on more accounts than this links nobody (shared cloud/NAT/VPN
    #: prefixes would otherwise chain strangers into one giant component).
    max_prefix_accounts: int = Field(default=10, ge=1)
    restricted_operator_asns: tuple[int, ...] = DEFAULT_RESTRICTED_OPERATOR_ASNS

    @field_validator("restricted_countries", "intermediary_countries")
    @classmethod
    def _check_countries(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _upper_codes(v)

    @field_validator("utc_offsets")
    @classmethod
    def _check_offsets(cls, v: dict[str, float]) -> dict[str, float]:
        _upper_codes(tuple(v))
        bad = {k: o for k, o in v.items() if not -12.0 <= o <= 14.0}
        if bad:
            raise ValueError(f"UTC offsets must lie in [-12, 14] hours, got {bad}")
        return v

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> Policy:
        """Build from the `policy` section of params.yaml (missing keys keep defaults)."""
        return cls(**dict(data or {}))


def load_policy_file(params: Path | None) -> Policy:
    """The `policy` section of a params.yaml; the documented defaults when no file is given."""
    from exportguard.errors import ExportguardError

    if params is None:
        return Policy()
    import yaml
    from pydantic import ValidationError

    try:
        data = yaml.safe_load(Path(params).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ExportguardError(f"cannot read params file {params}: {exc}") from None
    if not isinstance(data, dict):
        raise ExportguardError(
            f"{params}: expected a mapping of sections, got {type(data).__name__}"
        )
    try:
        return Policy.from_mapping(data.get("policy"))
    except (ValidationError, TypeError) as exc:
        raise ExportguardError(f"{params}: invalid policy section:\n{exc}") from None


def policy_differences(a: Policy, b: Policy) -> list[str]:
    """Names of the policy keys whose values differ between `a` and `b`."""
    da, db = a.model_dump(mode="json"), b.model_dump(mode="json")
    return sorted(k for k in da if da[k] != db.get(k))
