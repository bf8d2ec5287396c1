"""The online scoring core behind the HTTP service: verified start-up, scoring, audit, metadata.

Kept free of BentoML so it can be tested directly; `service.py` only adapts HTTP to it.
Start-up verifies the bundle's hashes (`load_bundle`), opens the audit log and scores a
warm-up table whose SHAP contributions must add up to the raw scores; only then is the
engine ready. Every request's decisions are appended to the audit log before the answer
is returned; if that fails, or the request ran past its deadline, no score is returned.
Scoring (`prepare_*`, CPU-bound) and the durable audit append (`commit`, waits on fsync)
are separate steps so the service can release its scoring slot before the disk syncs;
concurrent commits share one fsync.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd

from exportguard.features.registry import BY_NAME, FEATURE_NAMES, FEATURES, feature_bounds
from exportguard.scoring.bundle import Bundle
from exportguard.scoring.scorer import ScoreBatch, Scorer
from exportguard.serving.audit import AuditError, AuditLog
from exportguard.serving.schemas import (
    MAX_ACCOUNTS,
    MAX_BODY_BYTES,
    MAX_TOP_K,
    AccountScore,
    FeatureInfo,
    ItemError,
    MetadataResponse,
    ModelInfo,
    ReasonOut,
    ScoreAccountsRequest,
    ScoreAccountsResponse,
    ScoreRequest,
    ScoreResponse,
    SnapshotInfo,
)
from exportguard.serving.settings import ServeSettings
from exportguard.serving.snapshot import MANIFEST_FILE, Snapshot, SnapshotError, load_snapshot

log = logging.getLogger(__name__)

#: Largest |sum(contributions) + base - raw| accepted at warm-up (exact TreeSHAP gives ~1e-12).
ADDITIVITY_TOL = 1e-6


class StartupError(RuntimeError):
    """The engine refused to become ready (warm-up failed); the message says why."""


class RequestFailed(Exception):
    """A request that cannot be answered with scores: HTTP status, machine code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


R = TypeVar("R")


@dataclass(frozen=True)
class Prepared(Generic[R]):
    """A computed response and the audit records that must be durable before it is sent."""

    response: R
    records: list[dict[str, Any]]


@dataclass(frozen=True)
class RequestInfo:
    request_id: str
    caller: str  # token id, never the token
    started: float  # time.monotonic() when the request arrived
    endpoint: str


def warmup_table(n: int = 64, seed: int = 0) -> pd.DataFrame:
    """Deterministic rows within each feature's accepted range, one all-missing row first."""
    rs = np.random.RandomState(seed)
    data: dict[str, np.ndarray] = {}
    for f in FEATURES:
        low, high = feature_bounds(f)
        if f.fmt == "bool":
            col = (rs.rand(n) < 0.5).astype(float)
        else:
            col = np.clip(rs.exponential(1.0, n) if low >= 0 else rs.normal(0, 2, n), low, high)
            col[rs.rand(n) < 0.2] = np.nan
        col[0] = np.nan
        data[f.name] = col
    return pd.DataFrame(data, columns=list(FEATURE_NAMES))


def spec_mismatch(snapshot: Snapshot, bundle: Bundle) -> str | None:
    """Why the snapshot's features are not the model's (None when they are)."""
    ours, theirs = bundle.metadata.get("feature_spec") or {}, snapshot.feature_spec or {}
    where = f"the feature snapshot at {snapshot.path} (as of {snapshot.as_of.isoformat()})"
    if not theirs:
        return f"{where} records no feature spec (written by an older release); rerun batch"
    for key, what in (("registry_sha256", "feature definitions"), ("policy_sha256", "policy")):
        if theirs.get(key) != ours.get(key):
            return (
                f"{where} was computed with another {what} than model {bundle.name} "
                f"v{bundle.version} ({key} {str(theirs.get(key))[:12]}… vs {str(ours.get(key))[:12]}…); "
                "rerun batch with this model"
            )
    return None


class Engine:
    """Holds the verified Scorer, the audit log and the (lazily reloaded) feature snapshot."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.scorer: Scorer | None = None
        self.audit: AuditLog | None = None
        self.ready = False
        self._snapshot: Snapshot | None = None
        self._snapshot_key: tuple[int, int] | None = None
        self._snapshot_lock = threading.Lock()
        self._model_info: ModelInfo | None = None

    def start(self) -> None:
        """Verify the bundle, open the audit log, warm up with an additivity check; then ready."""
        t0 = time.perf_counter()
        scorer = Scorer.from_path(self.settings.model_path)  # verifies every file's sha256
        audit = AuditLog(self.settings.audit_log, sync=self.settings.audit_sync)
        table = warmup_table()
        err = scorer.additivity_error(table)
        if not err <= ADDITIVITY_TOL:
            raise StartupError(
                f"warm-up failed: SHAP contributions miss the raw score by {err:.3g} "
                f"(tolerance {ADDITIVITY_TOL}); refusing to serve explanations that do not add up"
            )
        batch = scorer.score(table.iloc[:1], explain=True)
        if not (0.0 <= float(batch.prob[0]) <= 1.0):
            raise StartupError(f"warm-up failed: calibrated score {batch.prob[0]} outside [0, 1]")
        self.scorer, self.audit = scorer, audit
        self.ready = True
        log.info(
            "ready: model %s v%s sha256 %s, additivity error %.2g, audit log %s (%s; %.2f s)",
            scorer.bundle.name,
            scorer.bundle.version,
            scorer.bundle.sha256[:12],
            err,
            audit.path,
            audit.sync,
            time.perf_counter() - t0,
        )

    def _require_ready(self) -> Scorer:
        if not self.ready or self.scorer is None:
            raise RequestFailed(503, "not_ready", "the model is not loaded and verified yet")
        return self.scorer

    @property
    def model_info(self) -> ModelInfo:
        b = self._require_ready().bundle
        if self._model_info is None:
            self._model_info = ModelInfo(name=b.name, version=b.version, sha256=b.sha256)
        return self._model_info

    def snapshot(self) -> Snapshot:
        """The latest snapshot, reloaded (and re-verified) when its manifest changes."""
        manifest = self.settings.feature_store / MANIFEST_FILE
        try:
            st = manifest.stat()
            key = (st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        with self._snapshot_lock:
            if self._snapshot is None or key != self._snapshot_key:
                try:
                    snapshot = load_snapshot(self.settings.feature_store)
                except SnapshotError as exc:
                    self._snapshot = None
                    raise RequestFailed(503, "no_snapshot", str(exc)) from None
                mismatch = spec_mismatch(snapshot, self._require_ready().bundle)
                if mismatch:
                    self._snapshot = None
                    raise RequestFailed(503, "snapshot_mismatch", mismatch)
                self._snapshot = snapshot
                self._snapshot_key = key
                log.info(
                    "loaded feature snapshot as of %s (%d accounts)",
                    self._snapshot.as_of,
                    len(self._snapshot),
                )
            return self._snapshot

    def _results(
        self, ids: list[str], batch: ScoreBatch, explain: bool, top_k: int
    ) -> tuple[list[AccountScore], list[list[dict[str, Any]]]]:
        """The answers, and each one's reasons as plain dicts for its audit record."""
        out = []
        reason_dicts = [[r.as_dict() for r in row] for row in batch.top_reasons(top_k)]
        for i, account_id in enumerate(ids):
            contrib = fam = base = None
            if explain:
                assert batch.contributions is not None
                contrib = dict(
                    zip(batch.feature_names, map(float, batch.contributions[i]), strict=True)
                )
                fam = batch.family_contributions(i)
                base = batch.base_value
            out.append(
                AccountScore(
                    account_id=account_id,
                    score=float(batch.prob[i]),
                    band=str(batch.band[i]),
                    raw_score=float(batch.raw[i]),
                    reasons=[ReasonOut(**r) for r in reason_dicts[i]],
                    contributions=contrib,
                    family_contributions=fam,
                    base_value=base,
                )
            )
        return out, reason_dicts

    def _records(
        self,
        info: RequestInfo,
        batch: ScoreBatch,
        results: list[AccountScore],
        reasons: list[list[dict[str, Any]]],
        extra: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """One audit record per decision: who asked, what went in, what came out, which model.

        `reasons[i]` are result i's reasons as the dicts its ReasonOut models were built from.
        """
        model = self.model_info.model_dump()
        now = datetime.now(UTC).isoformat()
        names = batch.feature_names
        records = []
        for res, values, why in zip(results, batch.values.tolist(), reasons, strict=True):
            records.append(
                {
                    "time": now,
                    "request_id": info.request_id,
                    "caller": info.caller,
                    "endpoint": info.endpoint,
                    "account_id": res.account_id,
                    "features": {
                        n: (None if v != v else v)  # v != v only for NaN (missing)
                        for n, v in zip(names, values, strict=True)
                    },
                    "model": model,
                    "score": res.score,
                    "band": res.band,
                    "raw_score": res.raw_score,
                    "reasons": why,
                    **extra,
                }
            )
        return records

    def commit(self, info: RequestInfo, prepared: Prepared[R]) -> R:
        """Append the decisions to the audit log (durably); only then is the response released."""
        if time.monotonic() - info.started > self.settings.deadline_s:
            raise RequestFailed(
                503,
                "deadline_exceeded",
                f"request took over {self.settings.deadline_s:g} s; not scored",
            )
        assert self.audit is not None
        try:
            self.audit.append(prepared.records)
        except (AuditError, OSError) as exc:
            log.error("audit append failed, request %s not answered: %s", info.request_id, exc)
            raise RequestFailed(
                503, "audit_unavailable", "the decision could not be audited; not scored"
            ) from None
        return prepared.response

    def prepare_score(self, req: ScoreRequest, info: RequestInfo) -> Prepared[ScoreResponse]:
        """Score the given feature rows; the response is held back until `commit`."""
        scorer = self._require_ready()
        ids = [a.account_id for a in req.accounts]
        # One 2-D array straight to the Scorer: a DataFrame costs more than scoring one account.
        values = np.array(
            [[getattr(a, n) for n in FEATURE_NAMES] for a in req.accounts], dtype=np.float64
        )  # None -> NaN (missing)
        batch = scorer.score_values(values, explain=True)
        results, reasons = self._results(ids, batch, req.explain, req.top_k)
        response = ScoreResponse(request_id=info.request_id, model=self.model_info, results=results)
        return Prepared(response, self._records(info, batch, results, reasons, {}))

    def prepare_score_accounts(
        self, req: ScoreAccountsRequest, info: RequestInfo
    ) -> Prepared[ScoreAccountsResponse]:
        """Look ids up in the snapshot and score them; unknown ids are per-item errors."""
        scorer = self._require_ready()
        snap = self.snapshot()
        found, missing = snap.lookup(req.account_ids)
        errors = [
            ItemError(
                account_id=a,
                code="unknown_account",
                error=f"account {a!r} is not in the feature snapshot as of {snap.as_of.isoformat()}",
            )
            for a in missing
        ]
        results: list[AccountScore] = []
        records: list[dict[str, Any]] = []
        if len(found):
            batch = scorer.score(found, explain=True)
            ids = found["account_id"].tolist()
            results, reasons = self._results(ids, batch, req.explain, req.top_k)
            extra = {"snapshot": {"as_of": snap.as_of.isoformat(), "sha256": snap.sha256}}
            records = self._records(info, batch, results, reasons, extra)
        response = ScoreAccountsResponse(
            request_id=info.request_id,
            model=self.model_info,
            results=results,
            snapshot=SnapshotInfo(as_of=snap.as_of.isoformat(), sha256=snap.sha256, rows=len(snap)),
            errors=errors,
        )
        return Prepared(response, records)

    def score(self, req: ScoreRequest, info: RequestInfo) -> ScoreResponse:
        """POST /score in one call: score, audit, answer."""
        return self.commit(info, self.prepare_score(req, info))

    def score_accounts(self, req: ScoreAccountsRequest, info: RequestInfo) -> ScoreAccountsResponse:
        """POST /score_accounts in one call: look up, score, audit, answer."""
        return self.commit(info, self.prepare_score_accounts(req, info))

    def metadata(self) -> MetadataResponse:
        """GET /metadata: model identity, training metrics, bands, features and request limits."""
        b = self._require_ready().bundle
        features = []
        for spec in b.features:
            f = BY_NAME[str(spec["name"])]
            low, high = feature_bounds(f)
            features.append(
                FeatureInfo(
                    name=f.name,
                    family=f.family,
                    description=f.doc.format(value="<value>"),
                    monotone=f.monotone,
                    low=low,
                    high=high,
                )
            )
        metrics = b.metadata.get("metrics", {})
        return MetadataResponse(
            model=self.model_info,
            run_id=None if b.metadata.get("run_id") is None else str(b.metadata["run_id"]),
            metrics=json.loads(json.dumps(metrics, default=str))
            if isinstance(metrics, dict)
            else {},
            bands={"high": b.bands.high, "review": b.bands.review},
            features=features,
            feature_spec=dict(b.metadata["feature_spec"]),
            limits={
                "max_accounts": MAX_ACCOUNTS,
                "max_body_bytes": MAX_BODY_BYTES,
                "max_top_k": MAX_TOP_K,
            },
        )
