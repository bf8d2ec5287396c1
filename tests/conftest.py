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


#: set by `make test` (.ci/postgres.sh starts a local PostgreSQL and prints its URL)
PG_ENV = "EXPORTGUARD_TEST_PG_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def review_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty review database on each backend the workspace supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/review.db"
    url = os.environ.get(PG_ENV, "").strip()
    if not url:
        pytest.fail(
            f"{PG_ENV} is not set: run the tests with `make test`, which starts PostgreSQL "
            "(.ci/postgres.sh; installs Debian's postgresql package when run as root)"
        )
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:  # the tests own this database: start from nothing
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url
