"""Service settings, read once from the environment at start-up (the service has no flags).

`exportguard serve` turns its flags into these variables before it starts BentoML, so the
worker processes BentoML spawns read the same settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from exportguard.serving.audit import AUDIT_ENV, DEFAULT_AUDIT_LOG, SYNC_ENV, SYNC_MODES
from exportguard.serving.snapshot import DEFAULT_STORE, STORE_ENV

SERVICE_NAME = "exportguard"
MODEL_ENV = "EXPORTGUARD_MODEL"
DEFAULT_MODEL = Path("models/champion")
#: Seconds a request may take before it is answered 503 instead of being scored and audited
#: (below BentoML's traffic timeout, so a decision is never audited after its 504 was sent).
DEADLINE_ENV = "EXPORTGUARD_REQUEST_DEADLINE_S"
DEFAULT_DEADLINE_S = 20.0


class ServeSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model_path: Path
    feature_store: Path
    audit_log: Path
    deadline_s: float
    audit_sync: str = "fsync"  # see serving/audit.py: "fsync" (default) or "write"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServeSettings:
        """Paths from EXPORTGUARD_MODEL / _FEATURE_STORE / _AUDIT_LOG, with the documented defaults.

        Also EXPORTGUARD_REQUEST_DEADLINE_S and EXPORTGUARD_AUDIT_SYNC (fsync or write).
        """
        env = os.environ if environ is None else environ

        def path(var: str, default: Path) -> Path:
            value = env.get(var, "").strip()
            return Path(value) if value else default

        raw_deadline = env.get(DEADLINE_ENV, "").strip()
        try:
            deadline = float(raw_deadline) if raw_deadline else DEFAULT_DEADLINE_S
        except ValueError:
            raise ValueError(
                f"{DEADLINE_ENV}={raw_deadline!r} is not a number of seconds"
            ) from None
        if not 0 < deadline < 3600:
            raise ValueError(f"{DEADLINE_ENV}={deadline} must be between 0 and 3600 seconds")
        sync = env.get(SYNC_ENV, "").strip() or "fsync"
        if sync not in SYNC_MODES:
            raise ValueError(f"{SYNC_ENV}={sync!r}: expected one of {', '.join(SYNC_MODES)}")
        return cls(
            model_path=path(MODEL_ENV, DEFAULT_MODEL),
            feature_store=path(STORE_ENV, DEFAULT_STORE),
            audit_log=path(AUDIT_ENV, DEFAULT_AUDIT_LOG),
            deadline_s=deadline,
            audit_sync=sync,
        )
