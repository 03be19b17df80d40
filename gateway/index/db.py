"""Opening the index database and bringing its schema up to date.

SQLite runs in WAL mode so readers never block the single writer; every SQLite write transaction starts
with ``BEGIN IMMEDIATE`` so that two writers queue on the database lock (``busy_timeout``) instead of
failing half-way with "database is locked". PostgreSQL needs neither.

Two execution options tune a transaction (set them on the engine a caller binds its sessions to):

- ``READ_ONLY``: a deferred ``BEGIN`` on SQLite, which never waits for the write lock (WAL readers see the
  last commit). The command line's read-only commands and the SCP's duplicate check use it.
- ``BUSY_TIMEOUT``: seconds to wait for the write lock (SQLite ``busy_timeout``) or a row lock (PostgreSQL
  ``lock_timeout``) before the statement fails; the SCP sets it short so that a C-STORE is answered
  0xA700 (which senders retry) instead of waiting on a long pipeline transaction.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gateway.errors import ConfigError

_MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)

READ_ONLY = "gateway_read_only"
BUSY_TIMEOUT = "gateway_busy_timeout"
DEFAULT_BUSY_TIMEOUT = 60.0
# PostgreSQL SQLSTATEs of a lock that was not granted in time, or a statement cancelled by a timeout.
_PG_BUSY = {"55P03", "57014"}


def create_index_engine(url: str, *, synchronous_full: bool = True) -> Engine:
    """Create the engine for ``url`` with the settings the gateway relies on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, pool_size=8)
        sync = "FULL" if synchronous_full else "NORMAL"

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sync}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # On the DBAPI connection itself: this runs for every transaction, C-STOREs' included, and
            # SQLAlchemy's statement execution would cost more than the statement.
            dbapi = conn.connection.dbapi_connection
            options = conn.get_execution_options()
            statement = "BEGIN"
            try:
                if not options.get(READ_ONLY):
                    wait_ms = int(1000 * options.get(BUSY_TIMEOUT, DEFAULT_BUSY_TIMEOUT))
                    if conn.info.get("busy_timeout_ms") != wait_ms:  # a pooled connection keeps it
                        statement = f"PRAGMA busy_timeout={wait_ms}"
                        dbapi.execute(statement)
                        conn.info["busy_timeout_ms"] = wait_ms
                    statement = "BEGIN IMMEDIATE"
                dbapi.execute(statement)
            except sqlite3.OperationalError as exc:  # as SQLAlchemy would raise it ("database is locked")
                raise OperationalError(statement, None, exc) from exc

        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)

    @event.listens_for(engine, "begin")
    def _on_pg_begin(conn: Any) -> None:
        wait = conn.get_execution_options().get(BUSY_TIMEOUT)
        if wait is not None:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(1000 * wait)}")

    return engine


def is_busy(exc: BaseException) -> bool:
    """True when ``exc`` means the index was busy (a lock not granted in time), not broken."""
    if not isinstance(exc, DBAPIError):
        return False
    if getattr(exc.orig, "sqlstate", None) in _PG_BUSY:
        return True
    message = str(exc.orig).lower()
    return "database is locked" in message or "database table is locked" in message


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest Alembic revision (idempotent)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _head_revision() -> str | None:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()


def open_index_read_only(url: str) -> sessionmaker[Session]:
    """Open the index for reading only: no migration, no write lock. Raise :class:`ConfigError` if the
    schema is not at the newest revision (a writing command - serve, scp, worker - migrates it)."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise ConfigError("the index does not exist yet; start the gateway once to create and migrate it")
    engine = create_index_engine(url).execution_options(**{READ_ONLY: True})
    try:
        with engine.connect() as conn:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
    except SQLAlchemyError:
        current = None
    head = _head_revision()
    if current != head:
        engine.dispose()
        raise ConfigError(
            f"the index schema is at revision {current or 'none'}, not {head}: it needs migrating, "
            "which a writing command (gateway serve, scp or worker) does at start-up"
        )
    return sessionmaker(engine, expire_on_commit=False)


def open_index(url: str, *, synchronous_full: bool = True) -> sessionmaker[Session]:
    """Open (and migrate) the index at ``url``; return a session factory."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_index_engine(url, synchronous_full=synchronous_full)
    migrate(engine)
    return sessionmaker(engine, expire_on_commit=False)
