"""Shared fixtures: a tiny, deterministic model bundle and feature table made in the test."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from factories import build_bundle, make_feature_table

for _k, _v in {
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
}.items():
    os.environ.setdefault(_k, _v)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A verified bundle trained on a planted signal (session-scoped: built once)."""
    return build_bundle(tmp_path_factory.mktemp("bundle") / "champion")


@pytest.fixture()
def feature_table() -> pd.DataFrame:
    return make_feature_table(300, seed=7)
