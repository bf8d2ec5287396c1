"""Helpers for the service tests: an in-process app over a test bundle, tokens, request bodies."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from factories import make_feature_table

TOKEN = "test-token-alice-0123456789"
OTHER_TOKEN = "test-token-bob-abcdefghijk"
TOKENS = f"alice:{TOKEN},bob:{OTHER_TOKEN}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def service_env(bundle: Path, work: Path, **extra: str) -> dict[str, str]:
    """The EXPORTGUARD_* variables for a service over `bundle`, writing under `work`."""
    return {
        "EXPORTGUARD_MODEL": str(bundle),
        "EXPORTGUARD_AUDIT_LOG": str(work / "audit" / "decisions.jsonl"),
        "EXPORTGUARD_FEATURE_STORE": str(work / "store"),
        "EXPORTGUARD_API_TOKENS": TOKENS,
        "BENTOML_DO_NOT_TRACK": "true",
        # Prometheus collectors are process-global: a second in-process app would re-register them.
        "BENTOML_CONFIG_OVERRIDES": '{"services": {"exportguard": {"metrics": {"enabled": false}}}}',
        **extra,
    }


@contextmanager
def running_app(env: dict[str, str]) -> Iterator[Any]:
    """A started in-process service (lifespan run: bundle verified, warm-up passed)."""
    from starlette.testclient import TestClient

    from exportguard.serving.service import ExportGuard

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EXPORTGUARD_API_TOKENS_FILE", raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        app = ExportGuard.to_asgi()
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client


def account_rows(n: int, seed: int = 11) -> list[dict[str, Any]]:
    """JSON-ready accounts: feature values in range, NaN sent as null."""
    frame = make_feature_table(n, seed)
    rows = []
    for rec in frame.to_dict(orient="records"):
        rows.append(
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
        )
    return rows


def rows_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows).astype({k: float for k in rows[0] if k != "account_id"})
