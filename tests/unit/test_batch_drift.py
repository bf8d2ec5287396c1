"""Drift statistics: binning agrees with the training reference, PSI values and levels, merging."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from exportguard.monitoring.drift import (
    band_rises,
    bin_counts,
    drift_section,
    level,
    merge_stats,
    psi,
)
from exportguard.monitoring.reference import distribution


def test_same_population_has_near_zero_psi_and_binning_matches_training():
    rs = np.random.RandomState(0)
    train = rs.beta(0.5, 4.0, 20_000)
    train[rs.rand(len(train)) < 0.1] = np.nan
    spec = distribution(train)
    counts = bin_counts(train, np.asarray(spec["edges"]))
    present = counts[:-1]
    np.testing.assert_allclose(np.asarray(present) / sum(present), spec["proportions"], atol=1e-12)
    assert counts[-1] / sum(counts) == pytest.approx(spec["missing"])
    assert psi(counts, spec) == pytest.approx(0.0, abs=1e-9)


def test_psi_of_a_known_shift():
    spec = {"edges": [0.5], "proportions": [0.5, 0.5], "missing": 0.0}
    # actual 80/20 against expected 50/50: (0.3 ln 1.6) + (-0.3 ln 0.4)
    value = psi([80, 20, 0], spec)
    assert value == pytest.approx(0.3 * np.log(1.6) - 0.3 * np.log(0.4), rel=1e-3)
    assert level(value) == "alert"
    assert level(0.15) == "warn" and level(0.05) == "ok" and level(None) == "unavailable"


def test_a_rise_in_missing_values_counts_as_drift():
    spec = {"edges": [0.5], "proportions": [0.5, 0.5], "missing": 0.0}
    assert psi([25, 25, 50], spec) > 0.2


def test_drift_is_unavailable_without_reference():
    total = {"features": {"a": {"missing": 3}}, "score_ref": None}
    out = drift_section(total, {})
    assert out["available"] is False and "no training reference" in out["note"]
    assert out["features"]["a"] == {"psi": None, "level": "unavailable"}
    assert out["score"]["level"] == "unavailable"


def _part(n, band_high, hist_first, counts, top_score):
    return {
        "n": n,
        "bands": {"high": band_high, "review": 0, "low": n - band_high},
        "score_hist": [hist_first] + [0] * 19,
        "score_sum": 1.0,
        "features": {"a": {"counts": counts}, "b": {"missing": 2}},
        "score_ref": [n, 0],
        "top": [{"account_id": f"x{top_score}", "score": top_score}],
    }


def test_merge_sums_counts_and_keeps_the_overall_top():
    total = merge_stats([_part(10, 2, 10, [1, 2, 3], 0.5), _part(5, 1, 5, [0, 1, 1], 0.9)])
    assert total["n"] == 15 and total["bands"]["high"] == 3 and total["bands"]["low"] == 12
    assert total["score_hist"][0] == 15 and total["score_sum"] == 2.0
    assert total["features"]["a"]["counts"] == [1, 3, 4] and total["features"]["b"]["missing"] == 4
    assert total["score_ref"] == [15, 0]
    assert [t["score"] for t in total["top"]] == [0.9, 0.5]


def test_band_rises_lists_only_accounts_that_moved_up():
    prev = pd.DataFrame(
        {"account_id": ["a", "b", "c"], "band": ["low", "high", "review"], "score": [0.1, 0.9, 0.4]}
    )
    now = pd.DataFrame(
        {
            "account_id": ["a", "b", "c", "d"],
            "band": ["high", "review", "review", "high"],
            "score": [0.85, 0.5, 0.4, 0.95],
        }
    )
    out = band_rises(now, prev)
    assert (
        out["rose"] == 1 and out["fell"] == 1 and out["new_accounts"] == 1 and out["compared"] == 3
    )
    assert out["accounts"] == [
        {
            "account_id": "a",
            "band_previous": "low",
            "band": "high",
            "score_previous": 0.1,
            "score": 0.85,
        }
    ]
