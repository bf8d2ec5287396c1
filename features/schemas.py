"""Pandera schemas of the contract tables, built from the column specs, run after coercion.

Checks on categorical columns (countries, enumerations) look at each distinct value once,
so validating ten million usage rows costs a factorisation, not ten million regex calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from exportguard.features.columns import SPECS, ColumnSpec, Problem

_PATTERNS = {
    "country": (re.compile(r"[A-Z]{2}"), "not a two-letter upper-case ISO 3166-1 country code"),
    "domain": (
        re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?\.[a-z0-9-]{2,}"),
        "not a lower-case e-mail domain",
    ),
    "lang": (re.compile(r"[a-z]{2}"), "not a two-letter lower-case ISO 639-1 language code"),
}


def _per_distinct(predicate: Callable[[Any], object]) -> Callable[[pd.Series], pd.Series]:
    """Element-wise check evaluated once per distinct value (nulls pass; nullability is separate)."""

    def check(s: pd.Series) -> pd.Series:
        if isinstance(s.dtype, pd.CategoricalDtype):
            codes, uniques = s.cat.codes.to_numpy(), s.cat.categories
        else:
            codes, uniques = pd.factorize(s, use_na_sentinel=True)
        ok = np.fromiter((bool(predicate(u)) for u in uniques), dtype=bool, count=len(uniques))
        ok = np.append(ok, True)  # code -1 (null) -> last entry
        return pd.Series(ok[codes], index=s.index)

    return check


def _nonblank(s: pd.Series) -> pd.Series:
    """Per distinct value: text that is not empty or only whitespace (nulls pass)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes, uniques = s.cat.codes.to_numpy(), s.cat.categories
    else:
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
    values = np.asarray(uniques, dtype=object)
    if pd.api.types.infer_dtype(values, skipna=False) == "string":  # no per-value type test
        ok = np.array([v.strip() != "" for v in values] + [True], dtype=bool)
    else:
        ok = np.array([isinstance(v, str) and v.strip() != "" for v in values] + [True], dtype=bool)
    return pd.Series(ok[codes], index=s.index)  # code -1 (null) -> the trailing True


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _checks(spec: ColumnSpec) -> tuple[list[pa.Check], str]:
    if spec.kind in _PATTERNS:
        pattern, message = _PATTERNS[spec.kind]
        return [
            pa.Check(
                _per_distinct(partial(_matches, pattern)),
                name=message,
            )
        ], message
    if spec.kind == "enum":
        message = f"not one of {', '.join(spec.allowed)}"
        return [pa.Check(_per_distinct(lambda v: v in spec.allowed), name=message)], message
    if spec.kind in ("id", "str"):
        message = "empty string"
        return [pa.Check(_nonblank, name=message)], message
    checks = []
    if spec.min is not None:
        checks.append(pa.Check.ge(spec.min))
    if spec.max is not None:
        checks.append(pa.Check.le(spec.max))
    return checks, ""


def table_schema(table: str, unique: bool = True) -> pa.DataFrameSchema:
    """The table's pandera schema; `unique=False` leaves out the unique-id checks (a table
    validated in chunks checks them over the whole file instead)."""
    columns = {}
    for spec in SPECS[table]:
        checks, _ = _checks(spec)
        columns[spec.name] = pa.Column(
            checks=checks,
            nullable=spec.nullable,
            unique=spec.unique and unique,
            coerce=False,
            required=True,
        )
    return pa.DataFrameSchema(columns, strict=False, name=table)


def _describe(check: str, column: str) -> str:
    if check == "not_nullable":
        return "missing value in a required column"
    if check == "field_uniqueness":
        return "duplicate id (must be unique)"
    bound = re.fullmatch(r"(greater|less)_than_or_equal_to\((.*)\)", check)
    if bound:
        side = "below the minimum" if bound.group(1) == "greater" else "above the maximum"
        return f"{side} {float(bound.group(2)):g}"
    return check


def validate_frame(table: str, frame: pd.DataFrame, unique: bool = True) -> list[Problem]:
    """Problems found by the table's pandera schema, one per (column, check)."""
    try:
        table_schema(table, unique).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        problems = []
        for (column, check), grp in cases.groupby(["column", "check"], sort=False, dropna=False):
            col = None if pd.isna(column) else str(column)
            values = grp["failure_case"]
            if str(check) == "field_uniqueness" and col is not None:
                values = frame.loc[frame[col].duplicated(keep=False), col]
            problems.append(Problem.of(table, col, _describe(str(check), str(col)), values))
        return problems
    return []
