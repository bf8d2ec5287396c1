"""Time split with a label-delay gap, and rolling (prequential) folds. Never a random split.

Fold i (i = 0 is the latest) ends its test window at `as_of - i * fold_step`; going back
in time: test window, gap, validation window, gap, and training on everything before the
cutoff. Validation and test count each account once, at its *first* review, and only if
it had not been reviewed before the window opened (an account already judged is not a
new finding). Presumed negatives enter training only; one is dropped if its account was
reviewed before the cutoff (that label is known at training time and wins).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from exportguard.errors import ExportguardError
from exportguard.training.config import SplitParams
from exportguard.training.dataset import LABELLED, PRESUMED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fold:
    """Row positions into the examples frame for one time fold, and its window bounds."""

    index: int
    train_end: pd.Timestamp
    valid_start: pd.Timestamp
    valid_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def describe(self) -> str:
        return (
            f"fold {self.index}: train < {self.train_end:%Y-%m-%d} ({len(self.train)}), "
            f"valid {self.valid_start:%Y-%m-%d}..{self.valid_end:%Y-%m-%d} ({len(self.valid)}), "
            f"test {self.test_start:%Y-%m-%d}..{self.test_end:%Y-%m-%d} ({len(self.test)})"
        )


def _window(examples: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
    """First reviews inside [start, end) of accounts not reviewed before `start`."""
    mask = (
        (examples["kind"] == LABELLED)
        & (examples["as_of"] >= start)
        & (examples["as_of"] < end)
        & (examples["as_of"] == examples["first_labelled_at"])
    )
    rows = examples.loc[mask]
    return rows.index[~rows["account_id"].duplicated(keep="first")].to_numpy()


def _train_rows(examples: pd.DataFrame, cutoff: pd.Timestamp) -> np.ndarray:
    before = examples["as_of"] < cutoff
    labelled = before & (examples["kind"] == LABELLED)
    presumed = (
        before
        & (examples["kind"] == PRESUMED)
        & (examples["first_labelled_at"].isna() | (examples["first_labelled_at"] >= cutoff))
    )
    return examples.index[labelled | presumed].to_numpy()


def make_fold(
    examples: pd.DataFrame, test_end: pd.Timestamp, params: SplitParams, index: int
) -> Fold:
    """One fold whose test window ends at `test_end`."""
    gap = pd.Timedelta(days=params.gap_days)
    test_start = test_end - pd.Timedelta(days=params.test_days)
    valid_end = test_start - gap
    valid_start = valid_end - pd.Timedelta(days=params.valid_days)
    train_end = valid_start - gap
    return Fold(
        index=index,
        train_end=train_end,
        valid_start=valid_start,
        valid_end=valid_end,
        test_start=test_start,
        test_end=test_end,
        train=_train_rows(examples, train_end),
        valid=_window(examples, valid_start, valid_end),
        test=_window(examples, test_start, test_end),
    )


def _usable(examples: pd.DataFrame, fold: Fold, params: SplitParams) -> str | None:
    """Why a fold cannot be used, or None."""
    y = examples["label"].to_numpy()
    if len(fold.train) < params.min_train_examples:
        return f"{len(fold.train)} training examples < {params.min_train_examples}"
    if y[fold.train].sum() < params.min_eval_positives:
        return f"{int(y[fold.train].sum())} training positives"
    for name, rows in (("validation", fold.valid), ("test", fold.test)):
        pos = int(y[rows].sum())
        if pos < params.min_eval_positives or pos == len(rows):
            return f"{name} window has {len(rows)} examples with {pos} positives"
    return None


def time_folds(examples: pd.DataFrame, as_of: pd.Timestamp, params: SplitParams) -> list[Fold]:
    """Rolling folds, latest first; fold 0 must be usable, older ones are kept while usable."""
    if not examples.index.equals(pd.RangeIndex(len(examples))):
        raise ValueError("examples must have a default RangeIndex (row positions)")
    folds = []
    for i in range(params.n_folds):
        fold = make_fold(examples, as_of - pd.Timedelta(days=i * params.fold_step_days), params, i)
        problem = _usable(examples, fold, params)
        if problem is not None:
            if i == 0:
                raise ExportguardError(
                    f"not enough labelled data for a time split ({fold.describe()}): {problem}; "
                    "shorten split.valid_days/test_days/gap_days in params.yaml or supply more labels"
                )
            log.warning("fold %d and older dropped: %s", i, problem)
            break
        log.info("%s", fold.describe())
        folds.append(fold)
    return folds
