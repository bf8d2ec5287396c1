"""The review workflow on the database: queue, claims, decisions, approvals, labels out.

Every write is one transaction that first locks the audit chain's head row (`SELECT ...
FOR UPDATE` on PostgreSQL; on SQLite it starts with `BEGIN IMMEDIATE`, the write lock;
reads start a plain `BEGIN` and read a snapshot), changes the
case, and appends a hash-chained event (who, when, what, before/after). Writes are thus
serialised: two analysts can never claim one case, a decision is never lost, and the
chain has no fork. A form carries the case version it was rendered with; a write for an
older version is refused (409) and changes nothing.

Roles: `analyst` claims, decides (confirm / clear / escalate); `supervisor` also takes
escalated cases and approves or rejects a confirmation someone else proposed;
`auditor` reads only. A confirmation counts (becomes a label) only once approved.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import ColumnElement, Row, func, select
from sqlalchemy.orm import Session, sessionmaker

from exportguard.errors import ExportguardError
from exportguard.review.db import WRITE_OPTION
from exportguard.review.models import (
    DECISIONS,
    MAX_NOTE,
    TYPOLOGIES,
    Case,
    ChainHead,
    Decision,
    Event,
    SavedFilter,
    ScoreHistory,
)

ROLES = ("analyst", "supervisor", "auditor")
QUEUE_BANDS = ("high", "review")
GENESIS = "0" * 64
T = TypeVar("T")


class ReviewError(ExportguardError):
    """A review action that cannot be done; `status` is the HTTP status it maps to."""

    status = 400


class NotFound(ReviewError):
    status = 404


class Forbidden(ReviewError):
    status = 403


class Conflict(ReviewError):
    status = 409


@dataclass(frozen=True)
class Actor:
    name: str
    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ReviewError(f"unknown role {self.role!r}; one of {', '.join(ROLES)}")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _naive(t: Any) -> datetime | None:
    """A timestamp as naive UTC (how the database keeps them); None for a missing one."""
    if t is None or pd.isna(t):
        return None
    ts = pd.Timestamp(t)
    return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).to_pydatetime()


def case_record(case: Case) -> dict[str, Any]:
    """The audited state of a case."""
    return {
        "status": case.status,
        "assignee": case.assignee,
        "version": case.version,
        "typology": case.typology,
        "proposed_by": case.proposed_by,
    }


def event_hash(prev: str, record: dict[str, Any]) -> str:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev + body).encode()).hexdigest()


def _event_record(e: Event) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "at": e.at.isoformat(),
        "actor": e.actor,
        "action": e.action,
        "case_id": e.case_id,
        "before": e.before,
        "after": e.after,
    }


class ReviewStore:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        claim_ttl: timedelta = timedelta(minutes=30),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        bind = sessions.kw.get("bind")  # writes: the same engine, marked (SQLite: BEGIN IMMEDIATE)
        self.writes = (
            sessionmaker(bind.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False)
            if bind is not None
            else sessions
        )
        self.claim_ttl = claim_ttl
        self.clock = clock

    def close(self) -> None:
        """Close the database connections (the pool of the store's engine)."""
        bind = self.sessions.kw.get("bind")
        if bind is not None:
            bind.dispose()

    # --- the one write path ---------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[tuple[Session, Callable[..., None]]]:
        """A transaction holding the chain head; `log(actor, action, case_id, before, after)`."""
        with self.writes.begin() as session:
            head = session.execute(
                select(ChainHead).where(ChainHead.id == 1).with_for_update()
            ).scalar_one()
            now = self.clock()

            def log(
                actor: Actor,
                action: str,
                case_id: int | None = None,
                before: dict[str, Any] | None = None,
                after: dict[str, Any] | None = None,
            ) -> None:
                e = Event(
                    seq=head.seq + 1,
                    at=now,
                    actor=actor.name,
                    action=action,
                    case_id=case_id,
                    before=before,
                    after=after,
                    prev_hash=head.hash,
                    hash="",
                )
                e.hash = event_hash(head.hash, _event_record(e))
                session.add(e)
                head.seq, head.hash = e.seq, e.hash

            yield session, log

    def _case(self, session: Session, case_id: int, version: int | None = None) -> Case:
        case = session.get(Case, case_id)
        if case is None:
            raise NotFound(f"no case {case_id}")
        if version is not None and case.version != version:
            raise Conflict(
                f"case {case_id} changed since you opened it (version {version}, now "
                f"{case.version}: {case.status}"
                + (f", held by {case.assignee}" if case.assignee else "")
                + "); reload it"
            )
        return case

    def _held_by(self, case: Case, actor: Actor, now: datetime) -> None:
        if case.status != "claimed" or case.assignee != actor.name:
            holder = f"held by {case.assignee}" if case.assignee else "not claimed"
            raise Conflict(f"case {case.id} is {case.status} ({holder}); claim it first")
        if case.claimed_until is not None and case.claimed_until < now:
            raise Conflict(f"your claim on case {case.id} expired; claim it again")

    # --- queue ----------------------------------------------------------------------------
    def sync_run(
        self,
        scores: pd.DataFrame,
        run: dict[str, Any],
        actor: Actor,
        previous: pd.DataFrame | None = None,
        profiles: pd.DataFrame | None = None,
    ) -> int:
        """Open a case for every account of the run's review/high bands without one.

        `previous` (account_id, score) is the run before it: a new case's `rise` is its
        score minus that one (None for an account it did not score). `profiles`
        (account_id, declared_country, created_at: the accounts table) fills the cases'
        country and sign-up time, also of earlier cases synced without it.
        """
        if actor.role == "auditor":
            raise Forbidden("an auditor cannot open cases")
        needed = {"account_id", "score", "band", "model_version", "model_sha256"}
        missing = needed - set(scores.columns)
        if missing:
            raise ReviewError(f"batch run {run.get('run_id')}: columns {sorted(missing)} missing")
        for name, frame, cols in (
            ("previous run", previous, {"account_id", "score"}),
            ("accounts table", profiles, {"account_id", "declared_country", "created_at"}),
        ):
            if frame is not None and not cols <= set(frame.columns):
                raise ReviewError(f"{name}: columns {sorted(cols - set(frame.columns))} missing")
        rows = scores.loc[scores["band"].isin(QUEUE_BANDS)]
        before = (
            dict(
                zip(
                    previous["account_id"].astype(str), previous["score"].astype(float), strict=True
                )
            )
            if previous is not None
            else {}
        )
        profile = (
            {
                str(a): (str(c) if isinstance(c, str) else None, _naive(t))
                for a, c, t in profiles[
                    ["account_id", "declared_country", "created_at"]
                ].itertuples(index=False)
            }
            if profiles is not None
            else {}
        )
        as_of = pd.Timestamp(run["as_of"]).to_pydatetime() if run.get("as_of") else None
        with self._write() as (session, log):
            known = dict(session.execute(select(Case.account_id, Case.id)).tuples().all())
            now = self.clock()
            opened = 0
            new: list[tuple[Case, float, str]] = []
            for rec in rows.to_dict("records"):
                if rec["account_id"] in known:
                    continue
                account = str(rec["account_id"])
                prev = before.get(account)
                country, signed_up = profile.get(account, (None, None))
                case = Case(
                    account_id=str(rec["account_id"]),
                    run_id=str(run["run_id"]),
                    model_version=str(rec["model_version"]),
                    model_sha256=str(rec["model_sha256"]),
                    score=float(rec["score"]),
                    band=str(rec["band"]),
                    reasons=_reasons(rec),
                    top_family=_top_family(rec),
                    rise=None if prev is None else float(rec["score"]) - prev,
                    country=country,
                    signed_up_at=signed_up,
                    status="open",
                    version=1,
                    opened_at=now,
                )
                session.add(case)
                new.append((case, float(rec["score"]), str(rec["band"])))
                known[rec["account_id"]] = -1
                opened += 1
            session.flush()  # the new cases' ids
            seen = set(
                session.execute(
                    select(ScoreHistory.case_id).where(ScoreHistory.run_id == str(run["run_id"]))
                ).scalars()
            )
            points = [(c.id, s, b) for c, s, b in new]
            old = {a: i for a, i in known.items() if i >= 0}
            if old:
                mine = scores.loc[scores["account_id"].isin(list(old))]
                points += [(old[a], float(s), str(b)) for a, s, b in
                           mine[["account_id", "score", "band"]].itertuples(index=False)]  # fmt: skip
            for case_id, score, band in points:
                if case_id not in seen:
                    session.add(ScoreHistory(case_id=case_id, run_id=str(run["run_id"]),
                                             as_of=as_of, score=score, band=band))  # fmt: skip
            profiled = 0
            if profile:  # earlier cases synced without the accounts table
                bare = session.execute(select(Case).where(Case.country.is_(None))).scalars()
                for case in bare:
                    if case.account_id in profile:
                        case.country, case.signed_up_at = profile[case.account_id]
                        profiled += 1
            log(actor, "sync", after={"run_id": run["run_id"], "opened": opened,
                                      "profiled": profiled})  # fmt: skip
        return opened

    def history(self, case_id: int) -> list[ScoreHistory]:
        """The case's account's score in every synced run, in the order they were synced."""
        with self.sessions() as session:
            q = select(ScoreHistory).where(ScoreHistory.case_id == case_id)
            return list(session.execute(q.order_by(ScoreHistory.id)).scalars())  # sync order

    def queue(
        self,
        status: str | None = "open",
        band: str | None = None,
        limit: int = 100,
        offset: int = 0,
        family: str | None = None,
        assignee: str | None = None,
        country: str | None = None,
        min_age_days: int | None = None,
        max_age_days: int | None = None,
        order: str = "score",
    ) -> list[Row[Any]]:
        """Cases (read-only rows with a case's columns as attributes) by falling score, then
        rise (`order="rise"`: by rise, then score).

        An expired claim counts as open. The account age filters compare the sign-up time
        with now; cases without one (synced without the accounts table) do not match them.
        """
        rise = Case.rise.desc().nulls_last()
        orders: dict[str, tuple[ColumnElement[Any], ...]] = {
            "score": (Case.score.desc(), rise),
            "rise": (rise, Case.score.desc()),
        }
        if order not in orders:
            raise ReviewError(f"unknown queue order {order!r}; one of {', '.join(orders)}")
        with self.sessions() as session:
            # the ids first: sorting carries only the sort keys, not each case's reasons
            q = select(Case.id).order_by(*orders[order], Case.id)
            if status == "open":
                q = q.where(
                    (Case.status == "open")
                    | ((Case.status == "claimed") & (Case.claimed_until < self.clock()))
                )
            elif status is not None:
                q = q.where(Case.status == status)
            if band is not None:
                q = q.where(Case.band == band)
            if family is not None:
                q = q.where(Case.top_family == family)
            if assignee is not None:
                q = q.where(Case.assignee == assignee)
            if country is not None:
                q = q.where(Case.country == country)
            now = self.clock()
            if min_age_days is not None:
                q = q.where(Case.signed_up_at <= now - timedelta(days=min_age_days))
            if max_age_days is not None:
                q = q.where(Case.signed_up_at > now - timedelta(days=max_age_days))
            ids = list(session.execute(q.limit(limit).offset(offset)).scalars())
            rows = session.execute(select(Case.__table__).where(Case.id.in_(ids))).all()
            found = {r.id: r for r in rows}  # plain rows: a page of ORM objects costs 2x more
            return [found[i] for i in ids]

    def countries(self) -> list[str]:
        """The declared countries of the cases (the queue's country filter)."""
        with self.sessions() as session:
            q = select(Case.country).where(Case.country.is_not(None)).distinct()
            return sorted(str(c) for c in session.execute(q).scalars())

    # --- saved filters --------------------------------------------------------------------
    def save_filter(self, actor: Actor, name: str, query: dict[str, Any]) -> SavedFilter:
        """Keep `query` (the queue page's filters) as `actor`'s filter `name` (replaced)."""
        name = name.strip()
        if not name or len(name) > 64:
            raise ReviewError("a saved filter needs a name of 1 to 64 characters")
        with self._write() as (session, log):
            saved = session.execute(
                select(SavedFilter).where(SavedFilter.owner == actor.name, SavedFilter.name == name)
            ).scalar_one_or_none()
            before = None if saved is None else dict(saved.query)
            if saved is None:
                saved = SavedFilter(
                    owner=actor.name, name=name, query=query, created_at=self.clock()
                )
                session.add(saved)
            else:
                saved.query = query
            log(actor, "save_filter", before=before, after={"name": name, "query": query})
        return saved

    def saved_filters(self, actor: Actor) -> list[SavedFilter]:
        with self.sessions() as session:
            q = select(SavedFilter).where(SavedFilter.owner == actor.name)
            return list(session.execute(q.order_by(SavedFilter.name)).scalars())

    def delete_filter(self, actor: Actor, filter_id: int) -> None:
        """Delete one of `actor`'s saved filters (another user's is not found)."""
        with self._write() as (session, log):
            saved = session.get(SavedFilter, filter_id)
            if saved is None or saved.owner != actor.name:
                raise NotFound(f"no saved filter {filter_id} of yours")
            log(actor, "delete_filter", before={"name": saved.name, "query": saved.query})
            session.delete(saved)

    def get(self, case_id: int) -> Case:
        with self.sessions() as session:
            return self._case(session, case_id)

    def cases_of(self, account_ids: list[str]) -> dict[str, Case]:
        """The case of each of these accounts that has one."""
        if not account_ids:
            return {}
        with self.sessions() as session:
            q = select(Case).where(Case.account_id.in_(account_ids))
            return {c.account_id: c for c in session.execute(q).scalars()}

    def decisions(self, case_id: int) -> list[Decision]:
        with self.sessions() as session:
            q = select(Decision).where(Decision.case_id == case_id).order_by(Decision.id)
            return list(session.execute(q).scalars())

    # --- claims ---------------------------------------------------------------------------
    def claim_next(self, actor: Actor) -> Case | None:
        """Lock the top unclaimed case to `actor` (None when the queue is empty)."""
        if actor.role == "auditor":
            raise Forbidden("an auditor cannot claim cases")
        with self._write() as (session, log):
            now = self.clock()
            statuses = ["open", "escalated"] if actor.role == "supervisor" else ["open"]
            free = Case.status.in_(statuses) | (
                (Case.status == "claimed") & (Case.claimed_until < now)
            )
            case = session.execute(
                select(Case).where(free).order_by(Case.score.desc(), Case.id).limit(1)
            ).scalar_one_or_none()
            if case is None:
                return None
            self._take(case, actor, now, log)
            return case

    def claim(self, case_id: int, actor: Actor, version: int) -> Case:
        if actor.role == "auditor":
            raise Forbidden("an auditor cannot claim cases")
        with self._write() as (session, log):
            now = self.clock()
            case = self._case(session, case_id, version)
            expired = case.status == "claimed" and (
                case.claimed_until is not None and case.claimed_until < now
            )
            allowed = ("open", "escalated") if actor.role == "supervisor" else ("open",)
            if case.status not in allowed and not expired:
                raise Conflict(f"case {case_id} is {case.status}; it cannot be claimed")
            self._take(case, actor, now, log)
            return case

    def _take(self, case: Case, actor: Actor, now: datetime, log: Callable[..., None]) -> None:
        before = case_record(case)
        case.status, case.assignee = "claimed", actor.name
        case.claimed_until = now + self.claim_ttl
        case.version += 1
        log(actor, "claim", case.id, before, case_record(case))

    # --- decisions ------------------------------------------------------------------------
    def decide(
        self,
        case_id: int,
        actor: Actor,
        kind: str,
        note: str,
        version: int,
        typology: str | None = None,
    ) -> Case:
        """Confirm (with a typology; needs approval), clear, or escalate a claimed case."""
        if actor.role == "auditor":
            raise Forbidden("an auditor cannot decide")
        if kind not in ("confirm", "clear", "escalate"):
            raise ReviewError(f"decision {kind!r}: expected confirm, clear or escalate")
        text = _note(note)
        if kind == "confirm" and typology not in TYPOLOGIES:
            raise ReviewError(f"a confirmation needs a typology: one of {', '.join(TYPOLOGIES)}")
        with self._write() as (session, log):
            now = self.clock()
            case = self._case(session, case_id, version)
            self._held_by(case, actor, now)
            before = case_record(case)
            case.assignee, case.claimed_until = None, None
            if kind == "confirm":
                case.status, case.proposed_by, case.typology = "proposed", actor.name, typology
            elif kind == "clear":
                case.status, case.decided_at, case.typology = "cleared", now, None
            else:
                case.status = "escalated"
            case.version += 1
            session.add(_decision(case, kind, typology, text, actor, now))
            log(actor, kind, case.id, before, case_record(case))
            return case

    def review_confirmation(
        self, case_id: int, actor: Actor, approve: bool, note: str, version: int
    ) -> Case:
        """A supervisor other than the proposer approves (it counts) or rejects (reopened)."""
        if actor.role != "supervisor":
            raise Forbidden("only a supervisor approves or rejects a confirmation")
        text = _note(note)
        with self._write() as (session, log):
            now = self.clock()
            case = self._case(session, case_id, version)
            if case.status != "proposed":
                raise Conflict(f"case {case_id} is {case.status}, not awaiting approval")
            if case.proposed_by == actor.name:
                raise Forbidden(
                    "you proposed this confirmation; another supervisor must approve it"
                )
            before = case_record(case)
            if approve:
                case.status, case.decided_at = "confirmed", now
            else:
                case.status, case.proposed_by, case.typology = "open", None, None
            case.version += 1
            kind = "approve" if approve else "reject"
            session.add(_decision(case, kind, case.typology, text, actor, now))
            log(actor, kind, case.id, before, case_record(case))
            return case

    def bulk(
        self,
        selection: list[tuple[int, int]],
        actor: Actor,
        action: str,
        note: str,
        assignee: str | None = None,
    ) -> int:
        """Assign (supervisors), escalate or close as duplicates open cases, all or none.

        `selection` is (case id, version) pairs as the queue showed them: if any case is
        not open any more, or changed, nothing is done and the message names them.
        """
        if actor.role == "auditor":
            raise Forbidden("an auditor cannot change cases")
        if action not in ("assign", "escalate", "duplicate"):
            raise ReviewError(f"bulk action {action!r}: assign, escalate or duplicate")
        if action == "assign" and actor.role != "supervisor":
            raise Forbidden("only a supervisor assigns cases")
        if action == "assign" and not assignee:
            raise ReviewError("assign needs the analyst's name")
        if not selection:
            raise ReviewError("no cases selected")
        if len(selection) > 500:
            raise ReviewError(f"{len(selection)} cases selected; at most 500 at once")
        text = _note(note)
        with self._write() as (session, log):
            now = self.clock()
            cases = [self._case(session, cid, version) for cid, version in selection]
            wrong = [c.id for c in cases if c.status != "open"]
            if wrong:
                raise Conflict(f"case(s) {wrong} are not open any more; reload the queue")
            for case in cases:
                before = case_record(case)
                if action == "assign":
                    case.status, case.assignee = "claimed", assignee
                    case.claimed_until = now + self.claim_ttl
                elif action == "escalate":
                    case.status = "escalated"
                else:
                    case.status, case.decided_at = "duplicate", now
                case.version += 1
                session.add(_decision(case, action, None, text, actor, now))
                log(actor, action, case.id, before, case_record(case))
            return len(cases)

    # --- labels out -----------------------------------------------------------------------
    def labels(self) -> pd.DataFrame:
        """Decided cases as rows of the contract's `labels` table (source `review`)."""
        with self.sessions() as session:
            done = session.execute(
                select(Case).where(Case.status.in_(("confirmed", "cleared"))).order_by(Case.id)
            ).scalars()
            rows = [
                {
                    "account_id": c.account_id,
                    "label": int(c.status == "confirmed"),
                    "labelled_at": pd.Timestamp(c.decided_at),
                    "source": "review",
                    "typology": c.typology if c.status == "confirmed" else None,
                }
                for c in done
            ]
        frame = pd.DataFrame(
            rows, columns=["account_id", "label", "labelled_at", "source", "typology"]
        )
        return frame.astype({"label": "int64", "labelled_at": "datetime64[ns]"})

    def record_export(self, actor: Actor, target: str, rows: int) -> None:
        with self._write() as (_session, log):
            log(actor, "export_labels", after={"target": target, "rows": rows})

    # --- audit ----------------------------------------------------------------------------
    def verify_audit(self) -> int:
        """Recompute the chain; raises ReviewError at the first broken link; returns its length."""
        with self.sessions() as session:
            prev, n = GENESIS, 0
            for e in session.execute(select(Event).order_by(Event.seq)).scalars():
                n += 1
                if e.seq != n:
                    raise ReviewError(f"audit trail: event {n} is missing (found {e.seq})")
                if e.prev_hash != prev or event_hash(prev, _event_record(e)) != e.hash:
                    raise ReviewError(
                        f"audit trail: event {e.seq} was changed after it was written"
                    )
                prev = e.hash
            head = session.get(ChainHead, 1)
            if head is None or head.seq != n or head.hash != prev:
                raise ReviewError("audit trail: its last events were removed")
            return n

    def count(self) -> int:
        with self.sessions() as session:
            return int(session.execute(select(func.count(Case.id))).scalar_one())


def _note(note: str) -> str:
    text = (note or "").strip()
    if not text:
        raise ReviewError("a note is required")
    if len(text) > MAX_NOTE:
        raise ReviewError(f"the note has {len(text)} characters; at most {MAX_NOTE}")
    return text


def _decision(
    case: Case, kind: str, typology: str | None, note: str, actor: Actor, now: datetime
) -> Decision:
    assert kind in DECISIONS
    return Decision(
        case_id=case.id,
        kind=kind,
        typology=typology,
        note=note,
        actor=actor.name,
        at=now,
        seen={
            "run_id": case.run_id,
            "model_version": case.model_version,
            "model_sha256": case.model_sha256,
            "score": case.score,
            "band": case.band,
            "reasons": case.reasons,
        },
    )


def _top_family(rec: dict[str, Any]) -> str | None:
    from exportguard.features.registry import BY_NAME

    feat = rec.get("reason_1_feature")
    return BY_NAME[feat].family if isinstance(feat, str) and feat in BY_NAME else None


def _reasons(rec: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for i in range(1, 100):
        feat = rec.get(f"reason_{i}_feature")
        if feat is None or (isinstance(feat, float) and feat != feat):
            break
        value = rec.get(f"reason_{i}_value")
        out.append(
            {
                "feature": str(feat),
                "value": None if value is None or value != value else float(value),
                "contribution": float(rec[f"reason_{i}_contribution"]),
                "sentence": str(rec[f"reason_{i}_sentence"]),
            }
        )
    return out


def merge_labels(existing: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """Existing labels plus the review's, without duplicate (account, label, time, source) rows."""
    parts = [p for p in (existing, new) if p is not None and len(p)]
    if not parts:
        return new
    merged = pd.concat(parts, ignore_index=True)
    return merged.drop_duplicates(
        subset=["account_id", "label", "labelled_at", "source"], keep="first"
    ).reset_index(drop=True)


__all__ = [
    "Actor",
    "Conflict",
    "Forbidden",
    "NotFound",
    "ReviewError",
    "ReviewStore",
    "merge_labels",
]
