"""Time split: later test labels only, a gap for label delay, ordered folds, accounts once."""

from __future__ import annotations

import pandas as pd
import pytest
from training_data import END, make_examples

from exportguard.errors import ExportguardError
from exportguard.training.config import SplitParams
from exportguard.training.split import make_fold, time_folds

PARAMS = SplitParams(
    gap_days=7, valid_days=30, test_days=30, n_folds=3, fold_step_days=20, min_eval_positives=3
)


def test_no_test_label_before_cutoff_plus_gap() -> None:
    ex = make_examples()
    for fold in time_folds(ex, END, PARAMS):
        gap = pd.Timedelta(days=PARAMS.gap_days)
        train_times = ex.loc[fold.train, "as_of"]
        assert train_times.max() < fold.train_end
        assert ex.loc[fold.valid, "as_of"].min() >= fold.train_end + gap
        assert ex.loc[fold.test, "as_of"].min() >= fold.valid_end + gap
        assert ex.loc[fold.test, "as_of"].min() >= fold.train_end + gap
        assert ex.loc[fold.test, "as_of"].max() < fold.test_end
        assert not set(fold.train) & set(fold.test)
        assert not set(fold.valid) & set(fold.test)


def test_folds_step_back_in_time_in_order() -> None:
    folds = time_folds(make_examples(), END, PARAMS)
    assert [f.index for f in folds] == list(range(len(folds)))
    assert len(folds) >= 2
    for newer, older in zip(folds, folds[1:], strict=False):
        assert older.test_end == newer.test_end - pd.Timedelta(days=PARAMS.fold_step_days)
        assert older.train_end < newer.train_end
    assert folds[0].test_end == END


def test_evaluation_windows_hold_only_first_reviews_of_new_accounts() -> None:
    ex = make_examples(600)
    # the same account reviewed again later: its re-review is not a new finding
    again = ex.loc[ex["kind"] == "label"].iloc[:50].copy()
    again["as_of"] = END - pd.Timedelta(days=3)
    ex = pd.concat([ex, again], ignore_index=True).sort_values("as_of").reset_index(drop=True)
    fold = make_fold(ex, END, PARAMS, 0)
    test = ex.loc[fold.test]
    assert (test["kind"] == "label").all()
    assert not test["account_id"].duplicated().any()
    assert not set(test["account_id"]) & set(again["account_id"])


def test_presumed_negatives_train_only_and_dropped_once_reviewed() -> None:
    ex = make_examples(800)
    fold = make_fold(ex, END, PARAMS, 0)
    assert (ex.loc[fold.valid, "kind"] == "label").all()
    # a presumed negative whose account is reviewed before the cutoff gives way to that label
    presumed = ex.index[(ex["kind"] == "presumed_negative") & (ex["as_of"] < fold.train_end)]
    reviewed, unknown_yet = presumed[0], presumed[1]
    ex.loc[reviewed, "first_labelled_at"] = fold.train_end - pd.Timedelta(days=1)
    ex.loc[unknown_yet, "first_labelled_at"] = fold.train_end + pd.Timedelta(days=1)
    fold = make_fold(ex, END, PARAMS, 0)
    assert reviewed not in set(fold.train)
    assert unknown_yet in set(fold.train)


def test_too_few_labels_is_a_clear_error() -> None:
    ex = make_examples(40)
    with pytest.raises(ExportguardError, match="not enough labelled data"):
        time_folds(ex, END, PARAMS)


def test_requires_row_positions() -> None:
    ex = make_examples(300).iloc[::-1]
    with pytest.raises(ValueError, match="RangeIndex"):
        time_folds(ex, END, PARAMS)
