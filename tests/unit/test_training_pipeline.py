"""run_training end to end on planted data: candidate, calibration, bands, baselines, truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from training_data import END, make_examples, make_population, small_params

from exportguard.features.registry import FEATURE_NAMES
from exportguard.training.calibrate import calibrate
from exportguard.training.pipeline import SCORERS, run_training, use_presumed_negatives
from exportguard.training.recipe import Recipe, backtest, refit_trees
from exportguard.training.report import render_table, summary


@pytest.fixture(scope="module")
def result():  # type: ignore[no-untyped-def]
    pop, truth = make_population()
    return run_training(make_examples(), pop, END, small_params(), truth)


def test_metrics_cover_model_and_both_baselines(result) -> None:  # type: ignore[no-untyped-def]
    for section in ("test", "truth"):
        for name in SCORERS:
            m = result.metrics[section][name]
            assert 0.0 <= m["ap"] <= 1.0 and 0.0 <= m["recall_at_k"] <= 1.0
        assert "brier" in result.metrics[section]["model"]
        assert "brier" not in result.metrics[section]["red_flags"]
    assert result.metrics["folds"]["n_folds"] == 2
    # the planted signal is learnable: the model beats the red-flag rule
    assert result.metrics["truth"]["model"]["ap"] > result.metrics["truth"]["red_flags"]["ap"]


def test_holdout_is_the_latest_fold_test_window(result) -> None:  # type: ignore[no-untyped-def]
    fold = result.folds[0]
    assert (result.holdout["as_of"] >= fold.test_start).all()
    assert (result.holdout["kind"] == "label").all()
    raw = result.fold_booster.predict(  # the backtest's model scored the holdout, not the refit
        result.holdout.loc[:, list(FEATURE_NAMES)].fillna(-1e9).to_numpy(), raw_score=True
    )
    np.testing.assert_allclose(raw, result.holdout["score_model"])


def test_the_deployed_model_is_the_refit_on_every_matured_label(result) -> None:  # type: ignore[no-untyped-def]
    """No fold model sees its test window; the deployed model has seen the latest labels."""
    params = small_params()
    examples = use_presumed_negatives(make_examples(), params)
    for fold in result.folds:
        assert (examples.loc[fold.train, "as_of"] < fold.train_end).all()
        assert fold.train_end < fold.valid_start < fold.test_start
        assert not set(fold.train) & set(fold.test)
    cutoff = END - pd.Timedelta(days=params.split.gap_days)
    labelled = examples.loc[(examples["kind"] == "label") & (examples["as_of"] < cutoff)]
    assert result.trained_through == labelled["as_of"].max()
    assert result.trained_through > result.folds[0].test_start  # it saw the test window
    assert result.metrics["refit"]["examples"] > len(result.folds[0].train)
    assert result.booster.model_to_string() != result.fold_booster.model_to_string()
    bt = backtest(Recipe(params.train), examples, END, params)
    trees = refit_trees(bt, result.metrics["refit"]["examples"], params.train)
    assert result.booster.current_iteration() == trees  # from the backtest, not early stopping


def test_calibration_is_fitted_only_on_out_of_fold_predictions(result) -> None:  # type: ignore[no-untyped-def]
    params = small_params()
    examples = use_presumed_negatives(make_examples(), params)
    bt = backtest(Recipe(params.train), examples, END, params)
    start = 0
    for fold in bt.folds:  # each fold's calibration rows are outside that fold's training
        rows = bt.oof_rows[start : start + len(fold.test)]
        assert np.array_equal(rows, fold.test) and not set(rows) & set(fold.train)
        start += len(fold.test)
    pop_raw = result.population["raw"].to_numpy()
    y = examples["label"].to_numpy()[bt.oof_rows]
    again = calibrate(params.calibration.method, bt.oof_raw, y, pop_raw)
    assert again == result.calibration
    cal = result.metrics["calibration"]
    assert cal["n"] == len(bt.oof_raw) and 0.0 <= cal["ece_out_of_fold"] <= 1.0


def test_bands_hold_the_weekly_capacity(result) -> None:  # type: ignore[no-untyped-def]
    never = result.population.loc[~result.population["reviewed_before"]]
    flagged = (never["band"] != "low").sum()
    assert flagged == 40  # small_params: review_capacity_per_week = 40
    assert (never["band"] == "high").sum() == 8  # 20% of it
    assert result.bands.review <= result.bands.high


def test_reference_has_every_feature_and_the_score(result) -> None:  # type: ignore[no-untyped-def]
    ref = result.reference
    assert set(ref["features"]) == set(FEATURE_NAMES)
    for spec in [*ref["features"].values(), ref["score"]]:
        assert len(spec["proportions"]) == len(spec["edges"]) + 1 or not spec["edges"]
        assert sum(spec["proportions"]) == pytest.approx(1.0) or not spec["proportions"]


def test_presumed_negatives_switch() -> None:
    ex = make_examples(400)
    off = use_presumed_negatives(ex, small_params(examples={"unreviewed": {"enabled": False}}))
    assert (off["kind"] == "label").all()
    on = use_presumed_negatives(ex, small_params(examples={"unreviewed": {"weight": 0.25}}))
    assert len(on) == len(ex)
    assert (on.loc[on["kind"] != "label", "weight"] == 0.25).all()


def test_isotonic_option_and_report(result) -> None:  # type: ignore[no-untyped-def]
    pop, truth = make_population()
    iso = run_training(
        make_examples(), pop, END, small_params(calibration={"method": "isotonic"}), truth
    )
    assert iso.calibration.method == "isotonic" and result.calibration.method == "platt"
    table = render_table(result.metrics)
    assert "LightGBM" in table and "red-flag count" in table and "ground truth" in table
    assert set(summary(result.metrics)["truth"]) == set(SCORERS)
