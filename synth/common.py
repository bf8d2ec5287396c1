"""Small vectorised helpers shared by the generator's modules: sampling, ids, string columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

NS_PER_HOUR = 3_600_000_000_000
NS_PER_DAY = 24 * NS_PER_HOUR

_STR = pd.StringDtype("pyarrow", na_value=np.nan)


def choice(rng: np.random.Generator, probs: Mapping[str, float], size: int) -> np.ndarray:
    """Draw `size` keys of `probs` with the given (unnormalised) weights."""
    keys = np.array(list(probs), dtype=object)
    p = np.array(list(probs.values()), dtype=float)
    return keys[rng.choice(len(keys), size=size, p=p / p.sum())]


def log_uniform_int(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Integers spread evenly on a log scale between lo and hi (inclusive)."""
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    x = np.exp(rng.uniform(np.log(lo), np.log(hi + 1.0)))
    return np.clip(np.floor(x), lo, hi).astype(np.int64)


def hex_ids(rng: np.random.Generator, n: int, prefix: str, width: int = 16) -> np.ndarray:
    """Unique random hex ids: nothing about an entity can be read from its id."""
    bits = 4 * width
    while True:
        raw = rng.integers(0, 2**63 - 1, size=n, dtype=np.int64) & ((1 << min(bits, 63)) - 1)
        if len(np.unique(raw)) == n:
            break
    return np.array([f"{prefix}{x:0{width}x}" for x in raw.tolist()], dtype=object)


def decode(codes: np.ndarray, categories: Sequence[str] | np.ndarray) -> pd.Series:
    """A string column from integer codes into `categories` (code -1 = null), built in Arrow."""
    codes = np.asarray(codes)
    idx = pa.array(codes.astype(np.int32), mask=codes < 0)
    arr = pa.DictionaryArray.from_arrays(idx, pa.array(list(categories), type=pa.string()))
    return pd.Series(arr.dictionary_decode().to_pandas(types_mapper={pa.string(): _STR}.get))


def as_str(values: np.ndarray | Sequence[object]) -> pd.Series:
    """A string column (None/NaN = null) with the project's string dtype."""
    return pd.Series(pd.array(list(values), dtype=_STR))


def to_time(ns: np.ndarray, unit_ns: int = 1_000_000_000) -> pd.Series:
    """Naive UTC datetime64[ns] column from int64 nanoseconds, floored to `unit_ns` (NaT kept)."""
    ns = np.asarray(ns, dtype=np.int64)
    nat = ns == np.iinfo(np.int64).min
    out = np.where(nat, ns, ns - ns % unit_ns)
    return pd.Series(out.view("datetime64[ns]"))


def codes_of(values: np.ndarray, categories: Sequence[str]) -> np.ndarray:
    """Integer codes of string values in `categories` (unknown or None -> -1)."""
    lookup = {c: i for i, c in enumerate(categories)}
    return np.array([lookup.get(v, -1) for v in values], dtype=np.int64)


def segment_pick(rng: np.random.Generator, owner: np.ndarray, cumw: np.ndarray) -> np.ndarray:
    """For each row, a slot index drawn from its owner's cumulative slot weights (rows x K)."""
    u = rng.random(len(owner))
    return (u[:, None] > cumw[owner]).sum(axis=1)
