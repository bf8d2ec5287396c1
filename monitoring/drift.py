"""Run statistics and drift: band counts, score histogram, PSI per feature and for the score.

Statistics are counted per chunk (so a resumed run does not re-read finished chunks) and
merged at the end. The training reference is the bundle's `reference.json` as written by
`exportguard.monitoring.reference`:

    {"features": {name: {"edges": [...], "proportions": [...], "missing": share}, ...},
     "score": {"edges": [...], "proportions": [...], "missing": 0.0}}

`edges` are inner cut points: bin i holds `np.searchsorted(edges, v, side="right") == i`
(outer bins open), so `len(proportions) == len(edges) + 1`; proportions are over present
values and `missing` is the share of NaN. PSI is computed over those bins plus a missing
bin: sum((a - e) * ln(a / e)), with shares floored at 1e-4 so an empty bin stays finite.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from exportguard.scoring.calibration import BAND_NAMES

log = logging.getLogger(__name__)

PSI_WARN = 0.1
PSI_ALERT = 0.2
SCORE_BINS = 20
TOP_N = 25
_FLOOR = 1e-4


def _ref_edges(spec: Mapping[str, Any]) -> np.ndarray | None:
    """The reference's cut points, or None if the spec is not usable."""
    try:
        edges = np.asarray(spec.get("edges", []), dtype=float)
        props = np.asarray(spec.get("proportions", []), dtype=float)
    except (TypeError, ValueError):
        return None
    if len(props) != len(edges) + 1 and not (len(edges) == 0 and len(props) == 0):
        return None
    return edges


def bin_counts(values: np.ndarray, edges: np.ndarray) -> list[int]:
    """Counts per reference bin (len(edges)+1 bins) followed by the count of missing values."""
    values = np.asarray(values, dtype=float)
    present = ~np.isnan(values)
    counts = np.bincount(
        np.searchsorted(edges, values[present], side="right"), minlength=len(edges) + 1
    )
    return [int(c) for c in counts] + [int((~present).sum())]


def chunk_stats(
    scored: pd.DataFrame,
    values: np.ndarray,
    feature_names: Sequence[str],
    reference: Mapping[str, Any],
    top_k: int,
) -> dict[str, Any]:
    """JSON-able statistics of one chunk's scored rows."""
    score = scored["score"].to_numpy(dtype=float)
    hist, _ = np.histogram(score, bins=SCORE_BINS, range=(0.0, 1.0))
    stats: dict[str, Any] = {
        "n": len(scored),
        "bands": {b: int((scored["band"] == b).sum()) for b in BAND_NAMES},
        "score_hist": [int(c) for c in hist],
        "score_sum": float(score.sum()),
        "features": {},
        "score_ref": None,
        "top": top_rows(scored, top_k),
    }
    feats = reference.get("features", {}) if isinstance(reference, Mapping) else {}
    for j, name in enumerate(feature_names):
        edges = _ref_edges(feats.get(name, {})) if name in feats else None
        col = values[:, j] if len(values) else np.zeros(0)
        if edges is None:
            stats["features"][name] = {"missing": int(np.isnan(col).sum())}
        else:
            stats["features"][name] = {"counts": bin_counts(col, edges)}
    ref_score = reference.get("score") if isinstance(reference, Mapping) else None
    if isinstance(ref_score, Mapping) and (edges := _ref_edges(ref_score)) is not None:
        stats["score_ref"] = bin_counts(score, edges)
    return stats


def top_rows(scored: pd.DataFrame, top_k: int, n: int = TOP_N) -> list[dict[str, Any]]:
    """The n highest-scoring rows with their reasons (ties broken by account_id)."""
    if len(scored) == 0:
        return []
    score = scored["score"].to_numpy(dtype=float)
    if len(score) > n:  # only rows at or above the n-th highest score can be in the top n
        cut = np.partition(score, len(score) - n)[len(score) - n]
        scored = scored.loc[score >= cut]
    head = scored.sort_values(["score", "account_id"], ascending=[False, True]).head(n)
    out = []
    for row in head.itertuples(index=False):
        rec = row._asdict()
        reasons = []
        for i in range(1, top_k + 1):
            feat = rec.get(f"reason_{i}_feature")
            if feat is None or (isinstance(feat, float) and np.isnan(feat)):
                break
            value = rec[f"reason_{i}_value"]
            reasons.append(
                {
                    "feature": feat,
                    "value": None if value is None or np.isnan(value) else float(value),
                    "contribution": float(rec[f"reason_{i}_contribution"]),
                    "sentence": rec[f"reason_{i}_sentence"],
                }
            )
        out.append(
            {
                "account_id": str(rec["account_id"]),
                "score": float(rec["score"]),
                "band": str(rec["band"]),
                "raw_score": float(rec["raw_score"]),
                "reasons": reasons,
            }
        )
    return out


def merge_stats(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum the counts of many chunks; keep the overall top rows."""
    total: dict[str, Any] = {
        "n": 0,
        "bands": dict.fromkeys(BAND_NAMES, 0),
        "score_hist": [0] * SCORE_BINS,
        "score_sum": 0.0,
        "features": {},
        "score_ref": None,
        "top": [],
    }
    for p in parts:
        total["n"] += p["n"]
        total["score_sum"] += p["score_sum"]
        for b, c in p["bands"].items():
            total["bands"][b] = total["bands"].get(b, 0) + c
        total["score_hist"] = [
            a + b for a, b in zip(total["score_hist"], p["score_hist"], strict=True)
        ]
        for name, f in p["features"].items():
            acc = total["features"].setdefault(
                name, {k: (0 if k == "missing" else None) for k in f}
            )
            for key, val in f.items():
                acc[key] = val if acc.get(key) is None else _add(acc[key], val)
        if p.get("score_ref") is not None:
            prev = total["score_ref"]
            total["score_ref"] = p["score_ref"] if prev is None else _add(prev, p["score_ref"])
        total["top"].extend(p["top"])
    total["top"] = sorted(total["top"], key=lambda r: (-r["score"], r["account_id"]))[:TOP_N]
    return total


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, list):
        return [x + y for x, y in zip(a, b, strict=True)]
    return a + b


def psi(actual_counts: Sequence[int], spec: Mapping[str, Any]) -> float | None:
    """Population stability index of counts (bins + missing) against a reference spec."""
    props = np.asarray(spec.get("proportions", []), dtype=float)
    missing = float(spec.get("missing", 0.0) or 0.0)
    expected = np.append(props * (1.0 - missing), missing)
    actual = np.asarray(actual_counts, dtype=float)
    if actual.sum() == 0 or len(actual) != len(expected) or expected.sum() <= 0:
        return None
    a = np.maximum(actual / actual.sum(), _FLOOR)
    e = np.maximum(expected / expected.sum(), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def level(value: float | None) -> str:
    """'ok', 'warn' (>= 0.1) or 'alert' (>= 0.2); 'unavailable' without a reference."""
    if value is None:
        return "unavailable"
    return "alert" if value >= PSI_ALERT else "warn" if value >= PSI_WARN else "ok"


def drift_section(total: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, Any]:
    """PSI per feature and for the score, with levels; 'unavailable' where no reference exists."""
    feats = reference.get("features", {}) if isinstance(reference, Mapping) else {}
    out: dict[str, Any] = {"available": bool(feats), "warn_at": PSI_WARN, "alert_at": PSI_ALERT}
    features = {}
    for name, f in total["features"].items():
        value = psi(f["counts"], feats[name]) if "counts" in f and name in feats else None
        features[name] = {"psi": value, "level": level(value)}
    out["features"] = features
    score_value = None
    if total.get("score_ref") is not None:
        score_value = psi(total["score_ref"], reference["score"])
    out["score"] = {"psi": score_value, "level": level(score_value)}
    if not out["available"]:
        out["note"] = "the model bundle has no training reference: drift is unavailable"
    return out


BAND_RANK = {"low": 0, "review": 1, "high": 2}


def band_rises(current: pd.DataFrame, previous: pd.DataFrame, n: int = 50) -> dict[str, Any]:
    """Accounts whose band rose since the previous run (frames of account_id, band, score)."""
    merged = current.merge(previous, on="account_id", suffixes=("", "_prev"), how="inner")
    cur = merged["band"].map(BAND_RANK)
    prev = merged["band_prev"].map(BAND_RANK)
    rose = merged.loc[cur > prev].sort_values(["score", "account_id"], ascending=[False, True])
    return {
        "compared": len(merged),
        "rose": len(rose),
        "fell": int((cur < prev).sum()),
        "new_accounts": int(len(current) - len(merged)),
        "accounts": [
            {
                "account_id": str(r.account_id),
                "band_previous": str(r.band_prev),
                "band": str(r.band),
                "score_previous": float(r.score_prev),
                "score": float(r.score),
            }
            for r in rose.head(n).itertuples(index=False)
        ],
    }
