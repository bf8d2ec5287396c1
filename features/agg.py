"""Vectorised per-request aggregates over joined rows (sums, shares, distinct counts, entropy)."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Key spaces up to this size are grouped with a dense bincount instead of hashing.
DENSE_SPAN = 1 << 22


def total(req: np.ndarray, weights: np.ndarray | None, n: int) -> np.ndarray:
    """Sum of `weights` (or row count) per request."""
    return np.bincount(req, weights=weights, minlength=n).astype(np.float64)


def share(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den where den > 0, else NaN: a share of nothing is unknown, not zero."""
    out = np.full(len(den), np.nan)
    ok = den > 0
    out[ok] = num[ok] / den[ok]
    return out


def pair_sums(
    req: np.ndarray, key: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group rows by (request, key): the distinct pairs and their summed weights."""
    if len(req) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    base = int(key.max()) + 1
    combined = req.astype(np.int64) * base + key
    span = (int(req.max()) + 1) * base
    if span <= max(4 * len(req), DENSE_SPAN):  # small key space: direct bincount, no hashing
        present = np.bincount(combined, minlength=span) > 0
        uniq = np.flatnonzero(present)
        sums = np.bincount(combined, weights=weights, minlength=span)[uniq].astype(np.float64)
    else:
        codes, uniq = pd.factorize(combined)
        sums = np.bincount(codes, weights=weights, minlength=len(uniq)).astype(np.float64)
        uniq = np.asarray(uniq, dtype=np.int64)
    return uniq // base, uniq % base, sums


def distinct(req: np.ndarray, key: np.ndarray, n: int) -> np.ndarray:
    """Number of distinct non-missing keys (key >= 0) per request."""
    ok = key >= 0
    pr, _, _ = pair_sums(req[ok], key[ok], None)
    return total(pr, None, n)


def entropy_bits(pair_req: np.ndarray, sums: np.ndarray, n: int) -> np.ndarray:
    """Shannon entropy (bits) of each request's distribution given as (request, mass) pairs."""
    tot = total(pair_req, sums, n)
    keep = sums > 0
    p = sums[keep] / tot[pair_req[keep]]
    h = total(pair_req[keep], -p * np.log2(p), n)
    h[tot <= 0] = np.nan
    return h


def group_max(req: np.ndarray, values: np.ndarray, n: int, empty: float = np.nan) -> np.ndarray:
    """Maximum of `values` per request (`empty` where a request has no rows)."""
    out = np.full(n, -np.inf)
    np.maximum.at(out, req, values)
    out[np.isneginf(out)] = empty
    return out


def group_min(req: np.ndarray, values: np.ndarray, n: int, empty: float = np.nan) -> np.ndarray:
    """Minimum of `values` per request (`empty` where a request has no rows)."""
    out = np.full(n, np.inf)
    np.minimum.at(out, req, values)
    out[np.isposinf(out)] = empty
    return out


def dense_profile(req: np.ndarray, slot: np.ndarray, weights: np.ndarray, n: int, k: int):
    """An (n, k) matrix of summed weights per request and slot (e.g. hour of day)."""
    flat = np.bincount(req.astype(np.int64) * k + slot, weights=weights, minlength=n * k)
    return flat.reshape(n, k)
