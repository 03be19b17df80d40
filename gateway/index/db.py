"""Opening the index database and bringing its schema up to date.

SQLite runs in WAL mode so readers never block the single writer; every SQLite transaction starts with
``BEGIN IMMEDIATE`` so that two writers queue on the database lock (``busy_timeout``) instead of failing
half-way with "database is locked". PostgreSQL needs neither.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

_MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


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
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest Alembic revision (idempotent)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def open_index(url: str, *, synchronous_full: bool = True) -> sessionmaker[Session]:
    """Open (and migrate) the index at ``url``; return a session factory."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_index_engine(url, synchronous_full=synchronous_full)
    migrate(engine)
    return sessionmaker(engine, expire_on_commit=False)
