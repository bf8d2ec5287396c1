"""Training test data made in the test: examples, population and truth on planted signals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from exportguard.training.config import Params, parse_params

from factories import make_feature_table, planted_labels

END = pd.Timestamp("2026-09-30")


def make_examples(
    n: int = 1500, seed: int = 0, days: int = 180, presumed_share: float = 0.4
) -> pd.DataFrame:
    """Labelled examples spread over `days` before END, plus a share of presumed negatives."""
    frame = make_feature_table(n, seed)
    y = planted_labels(frame, seed)
    rs = np.random.RandomState(seed + 11)
    frame["as_of"] = END - pd.to_timedelta(rs.randint(1, days * 24, n), unit="h")
    presumed = rs.rand(n) < presumed_share
    frame["label"] = np.where(presumed, 0, y)
    frame["weight"] = np.where(presumed, 0.5, 1.0)
    frame["kind"] = np.where(presumed, "presumed_negative", "label")
    frame["typology"] = np.where(
        frame["label"] == 1, np.where(rs.rand(n) < 0.5, "reseller", "proxy_access"), None
    )
    frame["source"] = np.where(presumed, "presumed", "investigation")
    frame["first_labelled_at"] = frame["as_of"].where(~presumed, pd.NaT)
    return frame.sort_values("as_of", kind="stable").reset_index(drop=True)


def make_population(n: int = 3000, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A scored population (never reviewed) and its truth from the same planted signal."""
    pop = make_feature_table(n, seed)
    pop["reviewed_before"] = False
    truth = pd.DataFrame(
        {
            "account_id": pop["account_id"],
            "is_circumvention": planted_labels(pop, seed),
            "typology": "reseller",
        }
    )
    return pop, truth


def small_params(**sections: dict) -> Params:
    """Fast parameters for tests: one thread, few rounds, two folds."""
    base = {
        "train": {"num_threads": 1, "num_boost_round": 80, "early_stopping_rounds": 20},
        "split": {"n_folds": 2, "fold_step_days": 30, "valid_days": 30, "test_days": 30},
        "bands": {"review_capacity_per_week": 40},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return parse_params(base)
