"""Column specifications of the data contract and their coercion to in-memory types.

Coercion never invents a value: a non-null input that does not convert (an unparseable
time, a word in a number column, 2.5 in an integer column) becomes a `Problem` with a
count and examples, and the whole read fails with one report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ACCOUNT_TYPES = ("individual", "organization")
TIERS = ("free", "build", "scale", "enterprise")
OWNER_TYPES = ("person", "company")
PAYMENT_METHODS = ("card", "prepaid_card", "bank_transfer", "wallet", "crypto", "invoice")
PAYMENT_STATUSES = ("succeeded", "failed", "refunded", "disputed")
NETWORK_TYPES = ("residential", "mobile", "business", "hosting", "vpn_proxy", "tor", "unknown")
LABEL_SOURCES = ("investigation", "tip", "rule_alert", "audit", "review")  # review: the workspace
TYPOLOGIES = ("reseller", "shell_company", "proxy_access", "exemption_abuse", "other")


@dataclass(frozen=True)
class ColumnSpec:
    """One contract column. kind: str, id, country, enum, ts, bool, int, float."""

    name: str
    kind: str
    nullable: bool = False
    unique: bool = False
    allowed: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None


def C(name: str, kind: str, **kw: object) -> ColumnSpec:  # noqa: N802 - table-like brevity
    return ColumnSpec(name, kind, **kw)  # type: ignore[arg-type]


SPECS: dict[str, tuple[ColumnSpec, ...]] = {
    "accounts": (
        C("account_id", "id", unique=True),
        C("created_at", "ts"),
        C("account_type", "enum", allowed=ACCOUNT_TYPES),
        C("org_id", "id", nullable=True),
        C("declared_country", "country"),
        C("billing_country", "country", nullable=True),
        C("email_domain", "domain"),
        C("signup_ip_country", "country", nullable=True),
        C("tier", "enum", allowed=TIERS),
        C("is_channel_partner", "bool"),
        C("research_exemption", "bool"),
    ),
    "organizations": (
        C("org_id", "id", unique=True),
        C("legal_name", "str"),
        C("registered_country", "country"),
        C("incorporated_at", "ts", nullable=True),
        C("registered_address", "str"),
    ),
    "ownership": (
        C("org_id", "id"),
        C("owner_name", "str"),
        C("owner_type", "enum", allowed=OWNER_TYPES),
        C("owner_country", "country"),
        C("ownership_pct", "float", min=0.0, max=100.0),
    ),
    "payments": (
        C("payment_id", "id", unique=True),
        C("account_id", "id"),
        C("paid_at", "ts"),
        C("amount_usd", "float", min=0.0),
        C("method", "enum", allowed=PAYMENT_METHODS),
        C("instrument_id", "id"),
        C("issuer_country", "country", nullable=True),
        C("status", "enum", allowed=PAYMENT_STATUSES),
    ),
    "api_usage": (
        C("account_id", "id"),
        C("api_key_id", "id"),
        C("hour", "ts"),
        C("ip_prefix", "str"),
        C("ip_country", "country", nullable=True),
        C("asn", "int", min=0),
        C("network_type", "enum", allowed=NETWORK_TYPES),
        C("requests", "int", min=0),
        C("input_tokens", "int", min=0),
        C("output_tokens", "int", min=0),
        C("end_user_ids", "int", min=0),
        C("top_language", "lang", nullable=True),
        C("top_language_share", "float", nullable=True, min=0.0, max=1.0),
    ),
    "logins": (
        C("account_id", "id"),
        C("login_at", "ts"),
        C("ip_country", "country", nullable=True),
        C("network_type", "enum", allowed=NETWORK_TYPES),
        C("device_id", "id"),
        C("browser_tz_offset_min", "int", nullable=True, min=-720, max=840),
        C("browser_language", "str", nullable=True),
    ),
    "labels": (
        C("account_id", "id"),
        C("label", "int", min=0, max=1),
        C("labelled_at", "ts"),
        C("source", "enum", allowed=LABEL_SOURCES),
        C("typology", "enum", nullable=True, allowed=TYPOLOGIES),
    ),
    "restricted_entities": (
        C("name", "str"),
        C("country", "country", nullable=True),
        C("list_name", "str"),
    ),
}


@dataclass(frozen=True)
class Problem:
    table: str
    column: str | None
    message: str
    rows: int
    examples: tuple[str, ...] = ()

    @classmethod
    def of(cls, table: str, column: str | None, message: str, bad: pd.Series) -> Problem:
        examples = tuple(str(v) for v in pd.unique(bad.astype(object))[:3])
        return cls(table, column, message, int(len(bad)), examples)

    def render(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        text = f"{where}: {self.message}"
        if self.rows:
            text += f" ({self.rows:,} row{'s' if self.rows != 1 else ''})"
        if self.examples:
            text += f"; e.g. {', '.join(repr(e) for e in self.examples)}"
        return text


def _as_text(v: object) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, float) and v.is_integer():  # ids written as 12.0 by a float-typed writer
        return str(int(v))
    return v if isinstance(v, str) else str(v)


def _to_str(s: pd.Series) -> pd.Series:
    """Strings as a categorical while validating: each distinct value is converted and checked once.

    `read_tables` turns them into plain object columns before returning (see `as_plain`).
    """
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes, uniques = s.cat.codes.to_numpy(), s.cat.categories
        if pd.api.types.infer_dtype(uniques, skipna=False) == "string":
            return s  # text already, as categories
    else:
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
    if pd.api.types.infer_dtype(uniques, skipna=False) == "string":
        # every distinct value is text already (the common case): nothing to convert
        # (measured: 10M usage rows in 21 chunks, 9.5 s -> 0 s)
        return pd.Series(
            pd.Categorical.from_codes(codes, categories=pd.Index(uniques, dtype=object)),
            index=s.index,
        )
    text = [_as_text(u) for u in uniques]
    if len(set(text)) == len(text) and None not in text:
        return pd.Series(
            pd.Categorical.from_codes(codes, categories=pd.Index(text, dtype=object)), index=s.index
        )
    lookup = np.array(
        text + [None], dtype=object
    )  # rare: 12 and "12" collide, or a null-like category
    return pd.Series(pd.Categorical(lookup[codes]), index=s.index)


def as_plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical text columns back to pandas' string dtype (what transforms expect).

    Measured on a 2.1M-row world: features ran 1.5x faster on `str` than on object columns.
    """
    out = frame.copy(deep=False)
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = _categorical_to_str(out[col])
    return out


def _categorical_to_str(s: pd.Series) -> pd.Series:
    """`s.astype("str")`, decoded by Arrow (measured: 10M rows, 2.3 s -> 0.22 s)."""
    import pyarrow as pa

    codes = s.cat.codes.to_numpy()
    categories = pa.array(s.cat.categories.to_numpy(dtype=object), type=pa.string())
    decoded = pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), categories)
    return pd.Series(pd.array(decoded.cast(pa.large_string()), dtype="str"), index=s.index)


def _to_ts(s: pd.Series, table: str, name: str, problems: list[Problem]) -> pd.Series:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        out = s.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_any_dtype(s.dtype):
        out = s
    else:
        out = pd.to_datetime(s, errors="coerce", utc=True, format="mixed").dt.tz_localize(None)
        bad = out.isna() & s.notna()
        if bad.any():
            problems.append(Problem.of(table, name, "unparseable timestamp", s[bad]))
    return out.astype("datetime64[ns]")


def _to_num(s: pd.Series, spec: ColumnSpec, table: str, problems: list[Problem]) -> pd.Series:
    if pd.api.types.is_bool_dtype(s.dtype):
        problems.append(Problem(table, spec.name, "boolean where a number is expected", len(s)))
        return pd.Series(np.nan, index=s.index)
    out = pd.to_numeric(s, errors="coerce").astype("float64")
    bad = out.isna() & s.notna()
    if bad.any():
        problems.append(Problem.of(table, spec.name, "not a number", s[bad]))
    inf = np.isinf(out)
    if inf.any():
        problems.append(Problem.of(table, spec.name, "infinite value", s[inf]))
        out = out.where(~inf)
    if spec.kind == "int":
        frac = out.notna() & (out != np.round(out))
        if frac.any():
            problems.append(Problem.of(table, spec.name, "not an integer", s[frac]))
        if not spec.nullable and not out.isna().any() and not frac.any():
            return out.astype("int64")
    return out


_TRUE = {"true", "1", "t", "yes", "y", "1.0"}
_FALSE = {"false", "0", "f", "no", "n", "0.0"}


def _to_bool(s: pd.Series, table: str, name: str, problems: list[Problem]) -> pd.Series:
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype(bool)
    text = s.astype(object).map(
        lambda v: (
            None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip().lower()
        )
    )
    ok = text.isin(_TRUE | _FALSE)
    bad = ~ok & text.notna()
    if bad.any():
        problems.append(
            Problem.of(table, name, "not a boolean (expected true/false or 0/1)", s[bad])
        )
    return text.isin(_TRUE).where(text.notna(), None)


def coerce_table(table: str, raw: pd.DataFrame, problems: list[Problem]) -> pd.DataFrame:
    """Contract columns converted to their in-memory types (extra columns are ignored)."""
    out = {}
    for spec in SPECS[table]:
        s = raw[spec.name]
        if spec.kind == "ts":
            out[spec.name] = _to_ts(s, table, spec.name, problems)
        elif spec.kind in ("int", "float"):
            out[spec.name] = _to_num(s, spec, table, problems)
        elif spec.kind == "bool":
            out[spec.name] = _to_bool(s, table, spec.name, problems)
        else:
            out[spec.name] = _to_str(s)
    return pd.DataFrame(out, index=raw.index).reset_index(drop=True)
