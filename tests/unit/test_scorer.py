"""The shared Scorer: exact TreeSHAP, calibration, bands, reasons and a verified bundle."""

from __future__ import annotations

import dataclasses
import shutil

import lightgbm as lgb
import numpy as np
import pytest

from exportguard.features.matrix import model_matrix
from exportguard.features.registry import FEATURE_NAMES
from exportguard.scoring.bundle import BundleError, load_bundle
from exportguard.scoring.scorer import V2_MIN_ROWS, Scorer

from factories import make_feature_table


def test_contributions_equal_lightgbm_pred_contrib(tiny_bundle, feature_table):
    scorer = Scorer.from_path(tiny_bundle)
    batch = scorer.score(feature_table)
    ref = scorer.booster.predict(model_matrix(feature_table), pred_contrib=True)
    np.testing.assert_allclose(batch.contributions, ref[:, :-1], atol=1e-9)
    assert batch.base_value == pytest.approx(ref[0, -1], abs=1e-9)
    np.testing.assert_allclose(batch.contributions.sum(1) + batch.base_value, batch.raw, atol=1e-9)


def test_large_batches_use_the_v2_path_with_identical_values(tiny_bundle):
    frame = make_feature_table(V2_MIN_ROWS + 10, seed=3)
    scorer = Scorer.from_path(tiny_bundle, n_jobs=2)
    ref = lgb.Booster(model_str=scorer.bundle.model_text).predict(
        model_matrix(frame), pred_contrib=True
    )
    batch = scorer.score(frame)
    np.testing.assert_allclose(batch.contributions, ref[:, :-1], atol=1e-9)


def test_probability_is_calibrated_monotone_and_banded(tiny_bundle, feature_table):
    scorer = Scorer.from_path(tiny_bundle)
    batch = scorer.score(feature_table, explain=False)
    order = np.argsort(batch.raw)
    assert np.all(np.diff(batch.prob[order]) >= 0)
    assert set(batch.band) <= {"high", "review", "low"}
    assert np.all((batch.prob >= 0.8) == (batch.band == "high"))


def test_reasons_are_positive_sorted_and_readable(tiny_bundle, feature_table):
    batch = Scorer.from_path(tiny_bundle).score(feature_table)
    top = int(np.argmax(batch.raw))
    reasons = batch.reasons(top, k=3)
    assert reasons, "the riskiest row has risk-raising features"
    contribs = [r.contribution for r in reasons]
    assert contribs == sorted(contribs, reverse=True) and contribs[-1] > 0
    assert all(r.feature in FEATURE_NAMES and r.sentence for r in reasons)
    fam = batch.family_contributions(top)
    assert sum(fam.values()) == pytest.approx(float(batch.contributions[top].sum()))


def test_top_reasons_ties_missing_values_and_no_reason(tiny_bundle, feature_table):
    """All rows at once equal row by row, and both follow the rules on hand-set contributions."""
    batch = Scorer.from_path(tiny_bundle).score(feature_table)
    contrib = batch.contributions.copy()
    contrib[0, :] = -0.1  # nothing raises the risk: no reasons
    contrib[1, :] = 0.25  # all tied: the declared feature order breaks ties
    contrib[2, :] = 0.0
    contrib[2, [3, 7, 11]] = [0.2, 0.9, 0.5]  # three positive, in this order: 7, 11, 3
    values = batch.values.copy()
    values[1, ::2] = np.nan  # missing: reported as None, "not provided" in the sentence
    values[2, 7] = 0.0
    batch = dataclasses.replace(batch, contributions=contrib, values=values)
    for k in (1, 3, len(FEATURE_NAMES) + 2):
        assert batch.top_reasons(k) == [batch.reasons(i, k) for i in range(len(batch))]
    top = batch.top_reasons(len(FEATURE_NAMES) + 2)
    assert top[0] == []
    assert [r.feature for r in top[1]] == list(FEATURE_NAMES)
    assert top[1][0].value is None and "was not provided" in top[1][0].sentence
    assert top[1][1].value == pytest.approx(values[1, 1])
    assert [(r.feature, r.contribution) for r in top[2]] == [
        (FEATURE_NAMES[7], 0.9), (FEATURE_NAMES[11], 0.5), (FEATURE_NAMES[3], 0.2)
    ]  # fmt: skip
    assert top[2][0].value == 0.0
    assert [r.feature for r in batch.top_reasons(2)[2]] == [FEATURE_NAMES[7], FEATURE_NAMES[11]]


def test_tampered_bundle_is_refused(tiny_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    with open(copy / "calibration.json", "a") as fh:
        fh.write(" ")
    with pytest.raises(BundleError, match="calibration.json"):
        load_bundle(copy)


def test_bundle_with_other_feature_list_is_refused(tiny_bundle):
    with pytest.raises(BundleError, match="feature list"):
        load_bundle(tiny_bundle, expected_features=FEATURE_NAMES[:-1])


def test_missing_and_infinite_inputs(tiny_bundle, feature_table):
    scorer = Scorer.from_path(tiny_bundle)
    frame = feature_table.copy()
    frame.loc[:, list(FEATURE_NAMES)] = np.nan
    batch = scorer.score(frame)
    assert np.isfinite(batch.prob).all()
    frame.iloc[0, 1] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        scorer.score(frame)


def test_score_values_is_score_without_the_frame(tiny_bundle, feature_table):
    scorer = Scorer.from_path(tiny_bundle)
    values = feature_table.loc[:, list(FEATURE_NAMES)].to_numpy(dtype=np.float64, copy=True)
    values[0, :5] = np.nan  # missing values go through the same encoding
    frame = feature_table.copy()
    frame.loc[:, list(FEATURE_NAMES)] = values
    a, b = scorer.score(frame), scorer.score_values(values)
    assert np.array_equal(a.raw, b.raw) and np.array_equal(a.prob, b.prob)
    assert np.array_equal(a.contributions, b.contributions)
    assert list(a.band) == list(b.band)
    with pytest.raises(ValueError, match="expected a"):
        scorer.score_values(values[:, :-1])
    values[1, 2] = -np.inf
    with pytest.raises(ValueError, match="infinite"):
        scorer.score_values(values)
