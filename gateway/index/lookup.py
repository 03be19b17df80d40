"""The one index read on the C-STORE path: is this SOP Instance stored already, and with what digest?

It runs for every instance, so it skips the ORM and SQLAlchemy's statement machinery: one parameterised
SELECT on a DBAPI connection kept open between calls (a few, shared by the associations of one process).
On SQLite the connection is in autocommit mode (``gateway.index.db``), so the SELECT is its own WAL read
transaction and never waits for the write lock; on PostgreSQL the read transaction is ended at once.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from gateway.errors import IndexError_, OutOfResources


@dataclass(frozen=True)
class Stored:
    digest: str | None
    path: str | None


class StoredLookup:
    """Looks up stored instances by SOP Instance UID on kept-open DBAPI connections."""

    def __init__(self, engine: Engine, *, keep: int = 4) -> None:
        self._engine = engine
        self._keep = keep
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._sql = f"SELECT digest, path FROM instances WHERE sop_instance_uid = {mark}"
        self._end_read = engine.dialect.name != "sqlite"
        weakref.finalize(self, _close_all, self._idle)

    def find(self, sop_instance_uid: str) -> Stored | None:
        """The stored instance's digest and path, or None; raises :class:`OutOfResources` when busy."""
        with self._lock:
            raw = self._idle.pop() if self._idle else None
        if raw is None:
            raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(self._sql, (sop_instance_uid,))
                row = cursor.fetchone()
            finally:
                cursor.close()
            if self._end_read:
                raw.rollback()
        except Exception as exc:
            with contextlib.suppress(Exception):
                raw.invalidate()
            if "locked" in str(exc).lower() or getattr(exc, "sqlstate", None) in ("55P03", "57014"):
                raise OutOfResources("index busy; try again later") from exc
            raise IndexError_(f"index read failed: {type(exc).__name__}") from exc
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(raw)
                raw = None
        if raw is not None:
            raw.close()
        return None if row is None else Stored(row[0], row[1])

    def close(self) -> None:
        _close_all(self._idle)


def _close_all(connections: list[Any]) -> None:
    while connections:
        with contextlib.suppress(Exception):
            connections.pop().close()
