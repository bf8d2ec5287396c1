"""Shared checks for synthetic worlds: per-account aggregates of every raw column, and their AUCs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

_TIME = {"accounts": "created_at", "payments": "paid_at", "api_usage": "hour",
         "logins": "login_at", "labels": "labelled_at"}  # fmt: skip
_SKIP = {
    "account_id",
    "payment_id",
    "api_key_id",
    "ip_prefix",
    "instrument_id",
    "device_id",
    "org_id",
}


def _table_aggregates(name: str, df: pd.DataFrame, top: int = 12) -> pd.DataFrame:
    """Per account: row count, numeric means and shares of the frequent categories."""
    g = df.groupby("account_id", sort=False)
    cols: dict[str, pd.Series] = {f"{name}.rows": g.size()}
    for col in df.columns:
        if col in _SKIP:
            continue
        s = df[col]
        if col == _TIME.get(name):
            hours = s.dt.hour.astype(float)
            cols[f"{name}.{col}.hour_mean"] = hours.groupby(df["account_id"]).mean()
            cols[f"{name}.{col}.days"] = (
                (s.astype("int64") / 8.64e13).groupby(df["account_id"]).mean()
            )
        elif pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            v = s.astype(float)
            cols[f"{name}.{col}.mean"] = v.groupby(df["account_id"]).mean()
            cols[f"{name}.{col}.null"] = v.isna().groupby(df["account_id"]).mean()
        else:
            for cat in s.value_counts(dropna=False).index[:top]:
                hit = s.isna() if pd.isna(cat) else s.eq(cat).fillna(False)
                cols[f"{name}.{col}={cat}"] = hit.astype(float).groupby(df["account_id"]).mean()
    return pd.DataFrame(cols)


def raw_column_aggregates(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per account: every raw column of every account-keyed table, aggregated."""
    acc = tables["accounts"].set_index("account_id")
    parts = [_table_aggregates(n, tables[n]) for n in ("payments", "api_usage", "logins", "labels")]
    out = pd.DataFrame(index=acc.index)
    for col in acc.columns:
        s = acc[col]
        if col == "created_at":
            out[col] = s.astype("int64").astype(float)
        elif pd.api.types.is_bool_dtype(s):
            out[col] = s.astype(float)
        elif col == "org_id":
            out["has_org"] = s.notna().astype(float)
        else:
            for cat in s.value_counts(dropna=False).index[:20]:
                out[f"{col}={cat}"] = (
                    s.isna() if pd.isna(cat) else s.eq(cat).fillna(False)
                ).astype(float)
    for p in parts:
        out = out.join(p, how="left")
    return out


def single_column_aucs(agg: pd.DataFrame, truth: pd.Series) -> pd.Series:
    """max(AUC, 1 - AUC) of each column alone against the truth (missing = its own low value)."""
    y = truth.reindex(agg.index).to_numpy(bool)
    out = {}
    for col in agg.columns:
        x = agg[col].to_numpy(float)
        x = np.where(np.isnan(x), np.nanmin(x) - 1 if np.isfinite(x).any() else 0.0, x)
        if np.unique(x).size < 2:
            continue
        auc = roc_auc_score(y, x)
        out[col] = max(auc, 1 - auc)
    return pd.Series(out).sort_values(ascending=False)
