"""Turn off the usage telemetry of BentoML, MLflow and DVC (on by default in each)."""

from __future__ import annotations

import os

TELEMETRY_OFF = {
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
}


def disable_telemetry() -> None:
    """Set the opt-out variables unless the user set them; call before importing those libraries."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
