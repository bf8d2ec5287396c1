"""Service settings, read once from the environment at start-up (the service has no flags).

The variables and their checks are `exportguard.settings` (one place for every
EXPORTGUARD_* variable); this is the part of them the scoring engine uses.

`exportguard serve` turns its flags into these variables before it starts BentoML, so the
worker processes BentoML spawns read the same settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from exportguard.settings import Settings, env_name

SERVICE_NAME = "exportguard"
MODEL_ENV = env_name("model")
DEFAULT_MODEL = Settings.model_fields["model"].default
#: Seconds a request may take before it is answered 503 instead of being scored and audited
#: (below BentoML's traffic timeout, so a decision is never audited after its 504 was sent).
DEADLINE_ENV = env_name("request_deadline_s")
DEFAULT_DEADLINE_S = Settings.model_fields["request_deadline_s"].default


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
        s = Settings.from_env(environ)
        return cls(
            model_path=s.model,
            feature_store=s.feature_store,
            audit_log=s.audit_log,
            deadline_s=s.request_deadline_s,
            audit_sync=s.audit_sync,
        )
