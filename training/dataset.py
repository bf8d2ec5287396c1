"""Training examples, point in time: each labelled account as of its `labelled_at`.

Reviewed accounts give one example per label row, with features computed only from rows
dated before the decision, so nothing the reviewer (or anyone) saw later leaks in. Never-
reviewed accounts may enter as a weighted random sample of *presumed negatives*, each as of
a time drawn uniformly over its life, and only where it was unreviewed at that time (see
`ExamplesParams.unreviewed`; whether that helps is measured in the training note).

The population is every account that exists at the as-of time T, marked whether it was
reviewed before T; it is what a weekly rescoring ranks, what the bands and drift reference
are derived from, and (with a ground-truth file) what the model is judged on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd

from exportguard.errors import ExportguardError
from exportguard.features.policy import Policy
from exportguard.features.registry import FEATURE_NAMES
from exportguard.features.tables import RawTables
from exportguard.training.config import ExamplesParams

log = logging.getLogger(__name__)

LABELLED = "label"
PRESUMED = "presumed_negative"
EXAMPLE_COLUMNS = (
    "account_id",
    "as_of",
    "label",
    "weight",
    "kind",
    "typology",
    "source",
    "first_labelled_at",
)

FeaturePass = Callable[[RawTables, pd.DataFrame, Policy | None], pd.DataFrame]


def resolve_as_of(tables: RawTables, as_of: str | pd.Timestamp | None) -> pd.Timestamp:
    """The data's 'now': an explicit time, else the latest timestamp in the tables."""
    if as_of is None:
        return pd.Timestamp(tables.horizon())
    try:
        ts = pd.Timestamp(as_of)
    except (ValueError, TypeError):
        raise ExportguardError(
            f"--as-of {as_of!r} is not a timestamp (use e.g. 2026-09-01)"
        ) from None
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def first_label_times(labels: pd.DataFrame) -> pd.Series:
    """Earliest `labelled_at` per account (when it was first reviewed)."""
    return labels.groupby("account_id", sort=True)["labelled_at"].min()


def labelled_requests(labels: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """One example per label row decided before `as_of`, dated at its decision time."""
    lab = labels.loc[labels["labelled_at"] < as_of]
    first = first_label_times(lab)
    typology = lab["typology"] if "typology" in lab else pd.Series(None, index=lab.index)
    out = pd.DataFrame(
        {
            "account_id": lab["account_id"].astype(str).to_numpy(),
            "as_of": lab["labelled_at"].to_numpy(),
            "label": lab["label"].astype(int).to_numpy(),
            "weight": 1.0,
            "kind": LABELLED,
            "typology": typology.astype(object).where(typology.notna(), None).to_numpy(),
            "source": lab["source"].astype(str).to_numpy(),
        }
    )
    out["first_labelled_at"] = out["account_id"].map(first).to_numpy()
    return out


def presumed_negative_requests(
    accounts: pd.DataFrame,
    labels: pd.DataFrame,
    as_of: pd.Timestamp,
    n: int,
    weight: float,
    min_age_days: float,
    seed: int,
) -> pd.DataFrame:
    """A seeded sample of accounts, each as of a uniform time in its life when still unreviewed."""
    first = first_label_times(labels.loc[labels["labelled_at"] < as_of])
    acc = accounts.loc[:, ["account_id", "created_at"]].sort_values("account_id", kind="stable")
    start = acc["created_at"] + pd.Timedelta(days=min_age_days)
    eligible = acc.loc[start < as_of].assign(start=start[start < as_of])
    if n <= 0 or eligible.empty:
        return pd.DataFrame(columns=list(EXAMPLE_COLUMNS))
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(eligible), size=min(n, len(eligible)), replace=False)
    chosen = eligible.iloc[np.sort(pick)]
    span = (as_of - chosen["start"]).to_numpy(dtype="timedelta64[s]").astype(np.int64)
    offsets = (rng.random(len(chosen)) * span).astype(np.int64)
    times = chosen["start"].to_numpy() + offsets.astype("timedelta64[s]")
    out = pd.DataFrame(
        {
            "account_id": chosen["account_id"].astype(str).to_numpy(),
            "as_of": pd.DatetimeIndex(times).floor("min"),
            "label": 0,
            "weight": float(weight),
            "kind": PRESUMED,
            "typology": None,
            "source": "presumed",
        }
    )
    out["first_labelled_at"] = out["account_id"].map(first).to_numpy()
    unreviewed = out["first_labelled_at"].isna() | (out["first_labelled_at"] > out["as_of"])
    return out.loc[unreviewed].reset_index(drop=True)


def example_requests(
    tables: RawTables, as_of: pd.Timestamp, params: ExamplesParams
) -> pd.DataFrame:
    """All training examples (without features), ordered by time then account."""
    if not (tables.labels["labelled_at"] < as_of).any():
        raise ExportguardError(
            f"labels: no label decided before {as_of} — training needs reviewed accounts"
        )
    labelled = labelled_requests(tables.labels, as_of)
    parts = [labelled]
    un = params.unreviewed
    if un.ratio > 0:  # sampled even when disabled, so both settings share one feature set
        presumed = presumed_negative_requests(
            tables.accounts,
            tables.labels,
            as_of,
            n=int(round(un.ratio * len(labelled))),
            weight=un.weight,
            min_age_days=un.min_account_age_days,
            seed=un.seed,
        )
        parts.append(presumed)
    out = pd.concat(parts, ignore_index=True)
    out["as_of"] = pd.to_datetime(out["as_of"]).astype("datetime64[ns]")
    out["first_labelled_at"] = pd.to_datetime(out["first_labelled_at"]).astype("datetime64[ns]")
    out["label"] = out["label"].astype(int)
    out["weight"] = out["weight"].astype(float)
    return out.sort_values(["as_of", "account_id", "kind"], kind="stable").reset_index(drop=True)


def population_requests(tables: RawTables, as_of: pd.Timestamp) -> pd.DataFrame:
    """Every account created before `as_of`, flagged if it was reviewed before then."""
    acc = tables.accounts
    acc = acc.loc[acc["created_at"] < as_of, ["account_id"]].sort_values("account_id")
    reviewed = set(tables.labels.loc[tables.labels["labelled_at"] < as_of, "account_id"])
    out = pd.DataFrame({"account_id": acc["account_id"].astype(str).to_numpy()})
    out["as_of"] = pd.Timestamp(as_of)
    out["reviewed_before"] = out["account_id"].isin(reviewed)
    return out


def attach_features(
    tables: RawTables,
    requests: pd.DataFrame,
    policy: Policy | None,
    feature_pass: FeaturePass | None = None,
) -> pd.DataFrame:
    """Add FEATURE_NAMES to each (account_id, as_of) request with one vectorised pass."""
    if feature_pass is None:
        from exportguard.features.compute import features_at

        feature_pass = features_at
    keys = requests.loc[:, ["account_id", "as_of"]].drop_duplicates(ignore_index=True)
    created = keys["account_id"].map(
        tables.accounts.set_index(tables.accounts["account_id"].astype(str))["created_at"]
    )
    unusable = created.isna() | (created >= keys["as_of"])
    if unusable.any():
        log.warning(
            "%d example time(s) name an unknown account or precede its sign-up and have no "
            "features; left out, e.g. %s",
            int(unusable.sum()),
            keys.loc[unusable].head(3).to_dict("records"),
        )
        keys = keys.loc[~unusable].reset_index(drop=True)
    feats = feature_pass(tables, keys, policy)
    missing = [c for c in ("account_id", "as_of", *FEATURE_NAMES) if c not in feats.columns]
    if missing:
        raise ExportguardError(f"feature pass returned no column(s) {missing[:5]}")
    feats = feats.loc[:, ["account_id", "as_of", *FEATURE_NAMES]].copy()
    feats["as_of"] = pd.to_datetime(feats["as_of"]).astype("datetime64[ns]")
    if feats.duplicated(["account_id", "as_of"]).any():
        raise ExportguardError("feature pass returned duplicate (account_id, as_of) rows")
    merged = requests.merge(feats, on=["account_id", "as_of"], how="left", indicator=True)
    unmatched = merged["_merge"] != "both"
    if unmatched.any():
        sample = merged.loc[unmatched, ["account_id", "as_of"]].head(3).to_dict("records")
        log.warning(
            "%d example(s) have no features and are left out, e.g. %s",
            int(unmatched.sum()),
            sample,
        )
    return merged.loc[~unmatched].drop(columns="_merge").reset_index(drop=True)
