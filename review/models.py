"""The review workspace's tables: cases, decisions, the audit trail and its chain head.

A case is one account taken from a committed batch run's review or high band, with what
the model said then (run id, model version, score, band, reasons). Its status moves

    open -> claimed -> cleared | proposed -> confirmed (a supervisor's approval)
                    -> escalated -> claimed (by a supervisor) -> ...
    open -> duplicate (closed without a label) | claimed (assigned by a supervisor)

and every change bumps `version` (optimistic concurrency: a form carries the version it
was rendered with, and a write for a stale version is refused). Decisions are append-only
and freeze what the analyst saw. Events are the hash-chained audit trail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

STATUSES = ("open", "claimed", "escalated", "proposed", "confirmed", "cleared", "duplicate")
DECISIONS = ("confirm", "clear", "escalate", "approve", "reject", "assign", "duplicate")
TYPOLOGIES = ("reseller", "shell_company", "proxy_access", "exemption_abuse", "other")
#: longest note kept (characters); longer ones are refused, never cut
MAX_NOTE = 4000


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("account_id", name="uq_cases_account"),
        Index("ix_cases_queue", "status", "score", "rise", "id", "claimed_until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(200), index=True)
    run_id: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(100))
    model_sha256: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float, index=True)
    band: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    #: the typology guess: the family of the top reason (a queue filter)
    top_family: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    #: score minus the account's score in the run synced before (None: not scored then)
    rise: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: the declared country and sign-up time (from the accounts table when synced with data)
    country: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    signed_up_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default="open")
    assignee: Mapped[str | None] = mapped_column(String(100), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    proposed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    typology: Mapped[str | None] = mapped_column(String(32), nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    opened_at: Mapped[datetime] = mapped_column(DateTime)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Decision(Base):
    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    typology: Mapped[str | None] = mapped_column(String(32), nullable=True)
    note: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(DateTime)
    seen: Mapped[dict[str, Any]] = mapped_column(JSON)  # what the analyst saw


class ScoreHistory(Base):
    """A case's account as each synced batch run scored it (the case page's history)."""

    __tablename__ = "score_history"
    __table_args__ = (UniqueConstraint("case_id", "run_id", name="uq_history_case_run"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    run_id: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    score: Mapped[float] = mapped_column(Float)
    band: Mapped[str] = mapped_column(String(16))


class SavedFilter(Base):
    """A user's named queue filter (the query of the queue page, as a dict)."""

    __tablename__ = "saved_filters"
    __table_args__ = (UniqueConstraint("owner", "name", name="uq_saved_filter_owner_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(64))
    query: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Event(Base):
    __tablename__ = "events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ChainHead(Base):
    """One row: the last event's sequence number and hash. Every write locks it first."""

    __tablename__ = "chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
