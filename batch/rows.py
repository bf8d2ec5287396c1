"""Row-level batch logic shared by the local and Spark engines: quarantine rules and output rows.

A chunk of the feature table becomes two frames: the scored rows (one per account, with
score, band, raw score, the top-k reasons as flat columns and optionally every
contribution) and the quarantined rows (the input row, its position and why it could not
be scored). Both engines call `process_chunk`, so they cannot disagree on a rule.

Output reason columns, for i = 1..k: `reason_<i>_feature`, `reason_<i>_value` (null when
the feature was missing), `reason_<i>_contribution` (log-odds) and `reason_<i>_sentence`;
they are exactly `ScoreBatch.reasons(row, k)`: positive contributions, largest first,
null once fewer than i features raise the risk. Flat columns (not a list of structs) so
that pandas, SQL engines and spreadsheets read them without unnesting.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from exportguard.features.matrix import feature_values
from exportguard.features.registry import BY_NAME, FEATURE_NAMES, feature_bounds, render_values
from exportguard.scoring.scorer import ScoreBatch, Scorer

ID = "account_id"
ROW = "input_row"
QUARANTINE_REASON = "quarantine_reason"


def _bounds() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = np.array([feature_bounds(BY_NAME[n]) for n in FEATURE_NAMES], dtype=np.float64).T
    return lo, hi, np.array([BY_NAME[n].fmt == "bool" for n in FEATURE_NAMES])


_LOW, _HIGH, _BOOL = _bounds()


def quarantine_reasons(
    frame: pd.DataFrame, duplicate_ids: Collection[str] = (), values: np.ndarray | None = None
) -> np.ndarray:
    """Why each row cannot be scored (object array; None = fine). Every problem is listed.

    `values` is the frame's (rows, features) float64 array if the caller has it already.
    The checks run on the whole array at once; messages are built only for failing rows.
    """
    n = len(frame)
    ids = frame[ID]
    null_id = ids.isna().to_numpy()
    dup = ids.isin(duplicate_ids).to_numpy() if len(duplicate_ids) else np.zeros(n, dtype=bool)
    vals = feature_values(frame) if values is None else values
    with np.errstate(invalid="ignore"):
        nonfinite = np.isinf(vals)
        present = ~nonfinite & ~np.isnan(vals)
        outside = present & ((vals < _LOW) | (vals > _HIGH))
        outside |= present & _BOOL & (vals != 0.0) & (vals != 1.0)  # yes/no: exactly 0 or 1
    bad = null_id | dup | nonfinite.any(axis=1) | outside.any(axis=1)
    out = np.full(n, None, dtype=object)
    for r in np.flatnonzero(bad):
        found = []
        if null_id[r]:
            found.append("null account_id")
        if dup[r]:
            found.append("duplicate account_id")
        for j in np.flatnonzero(nonfinite[r] | outside[r]):
            name, v = FEATURE_NAMES[j], vals[r, j]
            if nonfinite[r, j]:
                found.append(f"non-finite {name}={v}")
            else:
                found.append(f"{name}={v:.6g} outside [{_LOW[j]:g}, {_HIGH[j]:g}]")
        out[r] = "; ".join(found)
    return out


@dataclass(frozen=True)
class RunInfo:
    """The constant columns every output row carries, and the output options."""

    run_id: str
    as_of: pd.Timestamp
    model_name: str
    model_version: str
    model_sha256: str
    top_k: int = 5
    contributions: bool = False


def reason_columns(batch: ScoreBatch, k: int) -> dict[str, object]:
    """Top-k reasons of every row as flat columns, identical to `ScoreBatch.reasons`."""
    n = len(batch)
    order, top, keep, values = batch.top_reason_arrays(k)
    k_eff = order.shape[1]
    cols: dict[str, object] = {}
    names = np.asarray(batch.feature_names, dtype=object)
    for i in range(k):
        feature = np.full(n, None, dtype=object)
        value = np.full(n, np.nan)
        contribution = np.full(n, np.nan)
        sentence = np.full(n, None, dtype=object)
        if i < k_eff:
            rows = np.flatnonzero(keep[:, i])
            feature[rows] = names[order[rows, i]]
            value[rows] = values[rows, i]
            contribution[rows] = top[rows, i]
            sentence[rows] = _sentences(order[rows, i], values[rows, i], batch.feature_names)
        cols[f"reason_{i + 1}_feature"] = feature
        cols[f"reason_{i + 1}_value"] = value
        cols[f"reason_{i + 1}_contribution"] = contribution
        cols[f"reason_{i + 1}_sentence"] = sentence
    return cols


def _sentences(feature_idx: np.ndarray, values: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """`Feature.describe(value)` per row: values rendered at once, each distinct rendering
    of a feature filled into its sentence once (a share has at most 101 renderings)."""
    out = np.empty(len(values), dtype=object)
    for j in np.unique(feature_idx):
        rows = np.flatnonzero(feature_idx == j)
        feat = BY_NAME[names[j]]
        vals = values[rows]
        missing = np.isnan(vals)
        if missing.any():
            out[rows[missing]] = feat.describe(None)
        present = rows[~missing]
        if len(present):
            uniq, inverse = np.unique(render_values(feat.fmt, vals[~missing]), return_inverse=True)
            texts = np.array([feat.doc.format(value=r) for r in uniq], dtype=object)
            out[present] = texts[inverse.ravel()]
    return out


def scored_frame(ids: np.ndarray, batch: ScoreBatch, info: RunInfo) -> pd.DataFrame:
    """The output rows of a scored batch (see the module docstring for the columns)."""
    n = len(batch)
    cols: dict[str, object] = {
        ID: ids,
        "score": batch.prob,
        "band": batch.band.astype(object),
        "raw_score": batch.raw,
    }
    cols.update(reason_columns(batch, info.top_k))
    cols["model_name"] = np.full(n, info.model_name, dtype=object)
    cols["model_version"] = np.full(n, info.model_version, dtype=object)
    cols["model_sha256"] = np.full(n, info.model_sha256, dtype=object)
    cols["as_of"] = np.full(n, np.datetime64(info.as_of.as_unit("us").to_datetime64()))
    cols["run_id"] = np.full(n, info.run_id, dtype=object)
    if info.contributions:
        assert batch.contributions is not None
        cols["base_value"] = np.full(n, batch.base_value)
        for j, name in enumerate(batch.feature_names):
            cols[f"contrib_{name}"] = batch.contributions[:, j]
    return pd.DataFrame(cols)


def output_schema(info: RunInfo, feature_names: tuple[str, ...] = FEATURE_NAMES) -> pa.Schema:
    """The Arrow schema of scored rows (fixed, so every part and engine writes the same types)."""
    fields = [
        pa.field(ID, pa.string()),
        pa.field("score", pa.float64()),
        pa.field("band", pa.string()),
        pa.field("raw_score", pa.float64()),
    ]
    for i in range(1, info.top_k + 1):
        fields += [
            pa.field(f"reason_{i}_feature", pa.string()),
            pa.field(f"reason_{i}_value", pa.float64()),
            pa.field(f"reason_{i}_contribution", pa.float64()),
            pa.field(f"reason_{i}_sentence", pa.string()),
        ]
    fields += [
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("model_sha256", pa.string()),
        pa.field("as_of", pa.timestamp("us")),
        pa.field("run_id", pa.string()),
    ]
    if info.contributions:
        fields.append(pa.field("base_value", pa.float64()))
        fields += [pa.field(f"contrib_{n}", pa.float64()) for n in feature_names]
    return pa.schema(fields)


def quarantine_schema(feature_names: tuple[str, ...] = FEATURE_NAMES) -> pa.Schema:
    """The Arrow schema of quarantined rows: position, id, reason, then the input values."""
    return pa.schema(
        [
            pa.field(ROW, pa.int64()),
            pa.field(ID, pa.string()),
            pa.field(QUARANTINE_REASON, pa.string()),
            *[pa.field(n, pa.float64()) for n in feature_names],
        ]
    )


@dataclass(frozen=True)
class ChunkResult:
    scored: pd.DataFrame
    quarantined: pd.DataFrame
    values: np.ndarray  # (n_scored, F) feature values of the scored rows, for drift statistics


def process_chunk(
    scorer: Scorer,
    frame: pd.DataFrame,
    positions: np.ndarray,
    info: RunInfo,
    duplicate_ids: Collection[str] = (),
) -> ChunkResult:
    """Quarantine the rows that cannot be scored, score and explain the rest.

    `positions` are the rows' 0-based positions in the input table (kept for quarantined rows).
    """
    frame = frame.reset_index(drop=True)
    values = feature_values(frame)
    reasons = quarantine_reasons(frame, duplicate_ids, values)
    bad = ~pd.isna(reasons)
    quarantined = frame.loc[bad, [ID, *FEATURE_NAMES]].astype(
        {n: np.float64 for n in FEATURE_NAMES}
    )
    quarantined.insert(0, ROW, np.asarray(positions, dtype=np.int64)[bad])
    quarantined.insert(2, QUARANTINE_REASON, reasons[bad].astype(object))
    batch = scorer.score_values(values[~bad], explain=True)
    ids = frame.loc[~bad, ID].astype(str).to_numpy(dtype=object)
    return ChunkResult(
        scored_frame(ids, batch, info), quarantined.reset_index(drop=True), batch.values
    )
