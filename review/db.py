"""The review database: SQLite file by default, PostgreSQL for a team, always migrated.

`EXPORTGUARD_REVIEW_DB` (or `--db`) is an SQLAlchemy URL; the default is
`sqlite:///data/review.db`. `open_database` creates the schema with Alembic's migrations
(never `create_all`), so an existing database is upgraded in place. On SQLite (in WAL
mode) a write transaction, one whose engine carries the `WRITE_OPTION` execution option,
starts with `BEGIN IMMEDIATE` (it takes the write lock at once, so two writers wait for
each other instead of one failing half-way) and waits up to 30 s for a lock; a read starts
a plain `BEGIN` and sees a snapshot without waiting for writers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from exportguard.errors import ExportguardError

DEFAULT_URL = "sqlite:///data/review.db"
#: execution option marking a write transaction (SQLite: BEGIN IMMEDIATE)
WRITE_OPTION = "exportguard_write"
MIGRATIONS = Path(__file__).parent / "migrations"


class ReviewDatabaseError(ExportguardError):
    """The review database cannot be opened or migrated."""


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # writes take the write lock at once; reads (WAL) see a snapshot and wait for nobody
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _alembic(connection: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def open_database(url: str = DEFAULT_URL) -> sessionmaker[Session]:
    """An engine on `url`, migrated to the latest schema; returns its session factory."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin list at every open
    try:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # a file needs no liveness ping; a server connection may have been dropped
        engine = create_engine(url, future=True, pool_pre_ping=not url.startswith("sqlite"))
    except (ArgumentError, ImportError, ValueError) as exc:
        raise ReviewDatabaseError(f"review database URL {_safe(url)!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine)
    try:
        with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
            if current != head:
                command.upgrade(_alembic(connection), "head")
    except OperationalError as exc:
        raise ReviewDatabaseError(
            f"review database {_safe(url)}: cannot open or migrate ({exc.orig})"
        ) from None
    return sessionmaker(engine, expire_on_commit=False)


def _safe(url: str) -> str:
    """The URL without its password (for messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"
