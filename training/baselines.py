"""Two baselines on the same features, reported next to the model in every run.

- `LogisticBaseline`: L2 logistic regression after a signed log transform (tames counts and
  volumes), median imputation with a missing-value indicator per feature, and
  standardisation, all learnt on the training slice. It is stored as plain numbers (JSON),
  never pickled.
- `red_flag_count`: the rule an analyst team runs without a model — the number of published
  red flags an account raises (thresholds below, none fitted to data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from exportguard.features.registry import FEATURE_NAMES

#: (feature, threshold, why): a flag is raised when the value is >= the threshold.
RED_FLAGS: tuple[tuple[str, float, str], ...] = (
    ("restricted_traffic_share_30d", 0.05, "traffic from an unsupported region"),
    ("login_restricted_share", 0.05, "console logins from an unsupported region"),
    ("signup_ip_restricted", 0.5, "signed up from an unsupported region"),
    ("restricted_issuer_share", 0.01, "paid with instruments issued in an unsupported region"),
    ("restricted_ownership_effective", 0.25, "restricted-country beneficial owner (>= 25%)"),
    ("restricted_entity_name_similarity", 0.85, "name resembles a listed restricted entity"),
    ("vpn_tor_traffic_share_30d", 0.5, "mostly proxied or Tor traffic"),
    ("declared_country_mismatch_30d", 0.5, "traffic mostly outside the declared country"),
    ("unexpected_restricted_language_share_30d", 0.3, "restricted-region language, unexpected"),
    ("browser_tz_restricted_share", 0.3, "browser time zone of an unsupported region"),
    ("activity_tz_gap_hours", 4.0, "activity rhythm far from the declared time zone"),
    ("prepaid_crypto_amount_share", 0.5, "pays mostly with prepaid cards or crypto"),
    ("issuer_country_mismatch_share", 0.5, "payer instruments from a third country"),
    ("orgs_at_registered_address", 5.0, "registered at a mass-registration address"),
    ("linked_confirmed_positives", 1.0, "linked to a confirmed circumvention case"),
    ("end_users_per_active_hour_30d", 20.0, "serves many undisclosed end users"),
)


def red_flag_count(features: pd.DataFrame) -> np.ndarray:
    """Number of red flags raised per row (a missing value raises no flag)."""
    count = np.zeros(len(features))
    for name, threshold, _ in RED_FLAGS:
        values = features[name].to_numpy(dtype=float, na_value=np.nan)
        count += np.nan_to_num(values, nan=-np.inf) >= threshold
    return count


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass(frozen=True)
class LogisticBaseline:
    """A fitted logistic baseline as plain numbers: usable and storable without pickle."""

    names: tuple[str, ...]
    medians: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    coef: np.ndarray  # features then missing indicators
    intercept: float

    def _design(self, features: pd.DataFrame) -> np.ndarray:
        raw = features.loc[:, list(self.names)].to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(raw)
        x = _signed_log(np.where(missing, self.medians, raw))
        z = np.hstack([x, missing.astype(float)])
        return (z - self.means) / self.scales

    def decision(self, features: pd.DataFrame) -> np.ndarray:
        return self._design(features) @ self.coef + self.intercept

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision(features)))

    def to_json(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "medians": self.medians.tolist(),
            "means": self.means.tolist(),
            "scales": self.scales.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogisticBaseline:
        return cls(
            names=tuple(data["names"]),
            medians=np.asarray(data["medians"], dtype=float),
            means=np.asarray(data["means"], dtype=float),
            scales=np.asarray(data["scales"], dtype=float),
            coef=np.asarray(data["coef"], dtype=float),
            intercept=float(data["intercept"]),
        )


def fit_logistic(
    features: pd.DataFrame,
    y: np.ndarray,
    weight: np.ndarray | None = None,
    c: float = 1.0,
    names: Sequence[str] = FEATURE_NAMES,
) -> LogisticBaseline:
    """Fit the logistic baseline on a training slice (all preprocessing learnt here)."""
    raw = features.loc[:, list(names)].to_numpy(dtype=float, na_value=np.nan)
    medians = np.nanmedian(np.where(np.isnan(raw).all(axis=0), 0.0, raw), axis=0)
    medians = np.where(np.isnan(medians), 0.0, medians)
    missing = np.isnan(raw)
    z = np.hstack([_signed_log(np.where(missing, medians, raw)), missing.astype(float)])
    means = z.mean(axis=0)
    scales = z.std(axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit((z - means) / scales, np.asarray(y, dtype=int), sample_weight=weight)
    return LogisticBaseline(
        names=tuple(names),
        medians=medians,
        means=means,
        scales=scales,
        coef=model.coef_.ravel().astype(float),
        intercept=float(model.intercept_[0]),
    )
