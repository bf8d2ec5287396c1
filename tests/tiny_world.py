"""A tiny hand-made world for feature tests: every value in it is chosen so results can be
computed by hand (see the comments and tests/unit/test_features_values.py)."""

from __future__ import annotations

import pandas as pd

from exportguard.features.tables import RawTables

T = pd.Timestamp("2026-03-01")  # the as-of time of most tests


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def _frame(columns: list[str], rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    for col in frame.columns:
        if col.endswith(("_at", "hour")) or col == "hour":
            frame[col] = pd.to_datetime(frame[col]).astype("datetime64[ns]")
    return frame


ACCOUNT_COLS = [
    "account_id", "created_at", "account_type", "org_id", "declared_country", "billing_country",
    "email_domain", "signup_ip_country", "tier", "is_channel_partner", "research_exemption",
]  # fmt: skip
USAGE_COLS = [
    "account_id", "api_key_id", "hour", "ip_prefix", "ip_country", "asn", "network_type",
    "requests", "input_tokens", "output_tokens", "end_user_ids", "top_language",
    "top_language_share",
]  # fmt: skip
PAYMENT_COLS = [
    "payment_id", "account_id", "paid_at", "amount_usd", "method", "instrument_id",
    "issuer_country", "status",
]  # fmt: skip
LOGIN_COLS = [
    "account_id", "login_at", "ip_country", "network_type", "device_id",
    "browser_tz_offset_min", "browser_language",
]  # fmt: skip
LABEL_COLS = ["account_id", "label", "labelled_at", "source", "typology"]
ORG_COLS = ["org_id", "legal_name", "registered_country", "incorporated_at", "registered_address"]
OWN_COLS = ["org_id", "owner_name", "owner_type", "owner_country", "ownership_pct"]


def tiny_world() -> RawTables:
    """Four accounts before T (A1-A4) and one created after it (A5)."""
    accounts = _frame(
        ACCOUNT_COLS,
        [
            ("A1", "2026-01-01", "individual", None, "US", "US", "gmail.com", "CN", "free", False, False),
            ("A2", "2026-01-15", "organization", "O1", "SG", "SG", "gmail.com", "SG", "build", False, False),
            ("A3", "2025-12-01", "organization", "O2", "US", "HK", "acme.com", None, "scale", True, True),
            ("A4", "2026-02-01", "individual", None, "DE", None, "web.de", "DE", "free", False, False),
            ("A5", "2026-03-05", "individual", None, "FR", "FR", "orange.fr", "FR", "free", False, False),
        ],
    )  # fmt: skip
    usage = _frame(
        USAGE_COLS,
        [
            # A1: all at 02:00 UTC; 30-day window holds the 02-20 and 02-21 rows
            ("A1", "K1", "2026-01-10 02:00", "P1", "CN", 4134, "hosting", 100, 2000, 0, 0, "zh", 1.0),
            ("A1", "K1", "2026-02-20 02:00", "P1", "CN", 4134, "hosting", 60, 1000, 500, 5, "zh", 1.0),
            ("A1", "K2", "2026-02-21 02:00", "P2", "US", 7922, "residential", 40, 1000, 0, 3, "en", 1.0),
            # A2: one hour at 10:00 UTC from Singapore
            ("A2", "K3", "2026-02-25 10:00", "P3", "SG", 1, "business", 10, 100, 100, 0, "zh", 0.8),
            # A3: a 20M-token hour after 71.5 idle days, then two small weeks
            ("A3", "K4", "2026-02-10 12:00", "P4", "US", 7018, "residential", 5, 20_000_000, 0, 0, "en", 1.0),
            ("A3", "K4", "2026-02-17 12:00", "P4", "US", 7018, "residential", 5, 1000, 0, 0, "en", 1.0),
            ("A3", "K4", "2026-02-24 12:00", "P4", "US", 7018, "residential", 5, 1000, 0, 0, "en", 1.0),
        ],
    )  # fmt: skip
    payments = _frame(
        PAYMENT_COLS,
        [
            ("p1", "A1", "2026-02-01", 100.0, "card", "I1", "CN", "succeeded"),
            ("p2", "A1", "2026-02-05", 50.0, "prepaid_card", "I2", "HK", "succeeded"),
            ("p3", "A1", "2026-02-06", 20.0, "card", "I1", "CN", "failed"),
            ("p4", "A1", "2026-02-07", 30.0, "crypto", "I3", None, "disputed"),
            ("p5", "A3", "2026-02-15", 500.0, "card", "I1", "HK", "succeeded"),
        ],
    )
    logins = _frame(
        LOGIN_COLS,
        [
            ("A1", "2026-02-02", "CN", "residential", "D1", 480, "zh-CN"),
            ("A1", "2026-02-03", "US", "residential", "D1", -360, "en-US"),
            ("A2", "2026-02-26", "SG", "business", "D1", 480, "zh-SG"),
            ("A3", "2026-02-11", "US", "business", "D3", -300, "en-US"),
        ],
    )
    labels = _frame(
        LABEL_COLS,
        [
            ("A1", 1, "2026-02-10", "tip", "proxy_access"),
            ("A3", 1, "2026-03-10", "investigation", "reseller"),
        ],
    )
    organizations = _frame(
        ORG_COLS,
        [
            ("O1", "Lion Star Trading Pte. Ltd.", "SG", "2026-01-05", "1 RAFFLES PLACE #10-01"),
            ("O2", "Acme Holdings Ltd", "HK", "2020-01-01", "1 RAFFLES PLACE #10-01"),
            ("O3", "Dragon Parent Co", "CN", "2010-01-01", "1 BEIJING ROAD"),
            ("O4", "Shell Four Pte Ltd", "SG", "2026-02-20", "1 RAFFLES PLACE #10-01"),
            ("O5", "Middle Holdings Ltd", "SG", "2015-06-01", "5 ORCHARD ROAD"),
        ],
    )
    ownership = _frame(
        OWN_COLS,
        [
            ("O1", "Wang Wei", "person", "CN", 30.0),
            ("O1", "Middle Holdings", "company", "SG", 40.0),
            ("O1", "Tan Ah Kow", "person", "SG", 30.0),
            ("O5", "Li Na", "person", "CN", 30.0),
            ("O5", "Zhao Lei", "person", "RU", 25.0),
            ("O5", "Mary Lim", "person", "SG", 45.0),
            ("O2", "John Smith", "person", "US", 60.0),
            ("O2", "O3", "company", "CN", 40.0),
        ],
    )
    restricted = pd.DataFrame(
        {
            "name": ["Dragon Parent Company Limited", "Shenzhen Example Technology Co"],
            "country": ["CN", "CN"],
            "list_name": ["entity_list", "entity_list"],
        }
    )
    return RawTables(
        accounts=accounts,
        payments=payments,
        api_usage=usage,
        logins=logins,
        labels=labels,
        organizations=organizations,
        ownership=ownership,
        restricted_entities=restricted,
    )
