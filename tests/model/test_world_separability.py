"""No declared feature alone separates circumvention on a generated world; together they do."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from synth_checks import single_column_aucs

from exportguard.features.compute import account_features
from exportguard.features.registry import FEATURE_NAMES
from exportguard.features.tables import RawTables
from exportguard.synth.world import generate_world

END = pd.Timestamp("2026-10-01")


@pytest.fixture(scope="module", params=["default", "hard"])
def features_and_truth(request) -> tuple[pd.DataFrame, pd.Series]:
    world = generate_world(3000, seed=23, days=180, end=END, scenario=request.param)
    feats = account_features(RawTables(**world.tables), END).set_index("account_id")
    truth = world.truth.set_index("account_id")["is_circumvention"].reindex(feats.index)
    return feats[list(FEATURE_NAMES)].astype(float), truth


@pytest.mark.slow
def test_no_single_feature_separates_the_classes(features_and_truth):
    feats, truth = features_and_truth
    aucs = single_column_aucs(feats, truth)
    assert aucs.max() < 0.9, aucs.head(5).to_dict()


@pytest.mark.slow
def test_features_combined_beat_the_best_single_feature(features_and_truth):
    import lightgbm as lgb

    feats, truth = features_and_truth
    x, y = feats.to_numpy(), truth.to_numpy(bool)
    oof = np.zeros(len(y))
    for train, test in StratifiedKFold(3, shuffle=True, random_state=0).split(x, y):
        model = lgb.LGBMClassifier(n_estimators=120, learning_rate=0.05, num_leaves=15,
                                   min_child_samples=10, verbose=-1, random_state=0, n_jobs=1)  # fmt: skip
        model.fit(x[train], y[train])
        oof[test] = model.predict_proba(x[test])[:, 1]
    best_single = single_column_aucs(feats, truth).max()
    assert roc_auc_score(y, oof) > best_single + 0.05
