"""Group commit: one directory fsync and one index transaction for the instances of many C-STOREs.

Each association's handler writes and fsyncs its file and renames it into place, then hands the index row
to the :class:`GroupCommitter` and waits. The committer's thread takes every row that is waiting, fsyncs
each directory once (making the renames durable), writes all rows in one transaction and commits, and only
then releases the handlers, which answer Success. So every acknowledgement still follows the fsync of its
file and directory and the commit of its row; what is shared is the cost of the commit (SQLite's WAL fsync
or PostgreSQL's WAL flush) and of the directory fsyncs.

No timer is needed for groups to form: while one group commits, the rows of other associations queue up
and become the next group. ``dicom.group_commit_window`` can add a short wait before each group;
0 (the default) never delays a lone association.

A group that fails as a whole (a unique-key race with another process, say) is retried row by row, so one
bad row never fails the others; a busy index fails the group with :class:`OutOfResources` (0xA700).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from gateway.errors import IndexError_, OutOfResources, StoreError
from gateway.index.db import BUSY_TIMEOUT, is_busy
from gateway.index.repo import IdCache, InstanceRow, RecordedInstance, record_instances
from gateway.store.files import fsync_directories

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    row: InstanceRow
    directories: list[Path]
    done: Future[RecordedInstance] = field(default_factory=Future)


class GroupCommitter:
    """Commits index rows in groups; :meth:`commit` blocks until its row is durable.

    There is no committer thread: the first handler to find no commit under way leads, taking every row
    that is waiting (its own included) and committing them, while handlers that arrive meanwhile wait for
    it, and the next of them leads the next group. A lone association thus commits its own row inline,
    with no hand-over between threads.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        busy_timeout: float,
        fsync: bool = True,
        window: float = 0.0,
        max_group: int = 256,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._on_commit = on_commit
        self._engine = engine.execution_options(**{BUSY_TIMEOUT: busy_timeout})
        # Only the leader writes, so one connection, kept open, serves every group (no pool checkout,
        # return and reset per group); it is replaced after an error.
        self._conn: Connection | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._fsync = fsync
        self._window = window
        self._max_group = max_group
        self._ids = IdCache()
        self._cond = threading.Condition()
        self._waiting: list[_Pending] = []
        self._leading = False
        self.groups = 0  # groups committed, and the rows in them: the benchmark and tests read these
        self.rows = 0

    def commit(self, row: InstanceRow, directories: list[Path]) -> RecordedInstance:
        """Sync ``directories``, index ``row``; return once both are durable (or raise)."""
        pending = _Pending(row, directories)
        with self._cond:
            self._waiting.append(pending)
        while not pending.done.done():
            with self._cond:
                while self._leading and not pending.done.done():
                    self._cond.wait()
                if pending.done.done():
                    break
                self._leading = True
            try:
                if self._window > 0:
                    time.sleep(self._window)  # let rows of other associations join this group
                with self._cond:
                    group = self._waiting[: self._max_group]
                    del self._waiting[: len(group)]
                self._commit_safely(group)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        return pending.done.result()

    def _commit_safely(self, group: list[_Pending]) -> None:
        try:
            self._commit_group(group)
        except BaseException as exc:  # never leave a handler waiting forever
            for pending in group:
                if not pending.done.done():
                    pending.done.set_exception(exc)
            raise

    def _commit_group(self, group: list[_Pending]) -> None:
        if self._fsync:
            try:
                fsync_directories(d for pending in group for d in pending.directories)
            except OSError as exc:
                error: Exception = StoreError(f"cannot sync the store's directories: {exc.strerror}")
                for pending in group:
                    pending.done.set_exception(error)
                return
        try:
            results = self._write([p.row for p in group])
        except OutOfResources as exc:
            for pending in group:
                pending.done.set_exception(exc)
            return
        except (IntegrityError, OperationalError):
            if len(group) == 1:
                self._commit_alone(group[0])
                return
            log.debug("group commit raced another writer; committing its rows one by one", exc_info=True)
            for pending in group:
                self._commit_alone(pending)
            return
        except Exception as exc:
            log.debug("index write failed", exc_info=True)  # the message can quote patient data
            error = IndexError_(f"index write failed: {type(exc).__name__}")
            for pending in group:
                pending.done.set_exception(error)
            return
        self._committed(len(group))
        for pending, result in zip(group, results, strict=True):
            pending.done.set_result(result)

    def _committed(self, rows: int) -> None:
        self.groups += 1
        self.rows += rows
        if self._on_commit is not None:
            self._on_commit(rows)

    def _commit_alone(self, pending: _Pending) -> None:
        """One row in its own transaction, retried once when another writer raced us to a row."""
        for attempt in (1, 2):
            try:
                result = self._write([pending.row])[0]
            except OutOfResources as exc:
                pending.done.set_exception(exc)
                return
            except (IntegrityError, OperationalError) as exc:
                if attempt == 1:
                    continue
                log.debug("index write failed", exc_info=True)
                pending.done.set_exception(IndexError_(f"index write failed: {type(exc).__name__}"))
                return
            except Exception as exc:
                log.debug("index write failed", exc_info=True)
                pending.done.set_exception(IndexError_(f"index write failed: {type(exc).__name__}"))
                return
            self._committed(1)
            pending.done.set_result(result)
            return

    def _write(self, rows: list[InstanceRow]) -> list[RecordedInstance]:
        try:
            if self._conn is None or self._conn.closed or self._conn.invalidated:
                self._drop_connection()
                self._conn = self._engine.connect()
                # Closed properly also when the committer is dropped without close() (tests, CLI import).
                self._finalizer = weakref.finalize(self, _close_quietly, self._conn)
            conn = self._conn
            with conn.begin():
                results = record_instances(conn, rows, cache=self._ids)
        except Exception as exc:
            self._ids.discard()
            self._drop_connection()
            if is_busy(exc):
                raise OutOfResources("index busy (a long write elsewhere); try again later") from exc
            raise
        except BaseException:
            self._ids.discard()
            self._drop_connection()
            raise
        self._ids.commit()
        return results

    def _drop_connection(self) -> None:
        self._conn = None
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    def close(self) -> None:
        """Give the writing connection back (an SCP that stops; tests that dispose of the engine)."""
        with self._cond:
            self._drop_connection()


def _close_quietly(conn: Connection) -> None:
    with contextlib.suppress(Exception):
        conn.close()
