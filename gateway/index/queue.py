"""A table as a durable queue under leases: the mechanics shared by the job table
(:mod:`gateway.pipeline.jobs`) and the outbox (:mod:`gateway.delivery.outbox`).

A row is ``pending`` until due (``available_at``), then claimed by one worker, which holds it in the
queue's leased state (``running`` for jobs, ``sending`` for messages) until ``lease_expires_at``. A worker
that dies stops renewing; once the lease expires any worker claims the row again (that is how delivery
survives kill -9). Claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers on several hosts never
take the same row; on SQLite every transaction begins with ``BEGIN IMMEDIATE`` (:mod:`gateway.index.db`),
which makes the claim a single-writer critical section. A failure backs off exponentially, and after the
last attempt (or at once, when retrying cannot help) the row is ``dead`` with its reason.

What happens around a row (a study's state, the order of a patient's messages) stays with each queue: the
helpers take and return rows inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from gateway.index.models import Base

log = logging.getLogger(__name__)


#: A queue table: :class:`gateway.index.models.Job` or :class:`~gateway.index.models.Outbox`. Both have
#: id, state, attempts, available_at, lease_owner, lease_expires_at, last_error and updated_at.
R = TypeVar("R", bound=Base)


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Exponential backoff after ``attempts`` failed tries: base, 2·base, 4·base ... capped at ``cap``."""
    return float(min(base * (2 ** max(attempts - 1, 0)), cap))


@dataclass(frozen=True)
class LeasedQueue(Generic[R]):
    model: type[R]
    #: the state of a claimed row: "running" (jobs) or "sending" (outbox)
    leased: str

    def _col(self, name: str) -> Any:
        return getattr(self.model, name)

    def claim(
        self,
        session: Session,
        owner: str,
        lease_seconds: float,
        now: dt.datetime,
        *where: ColumnElement[bool],
    ) -> R | None:
        """Lease the oldest row that is due (pending) or whose lease expired, among those ``where``
        admits; None when there is none. The caller's transaction commits the claim."""
        state, available, expires = (
            self._col("state"),
            self._col("available_at"),
            self._col("lease_expires_at"),
        )
        query = (
            select(self.model)
            .where(
                or_(
                    and_(state == "pending", available <= now),
                    and_(state == self.leased, expires < now),
                ),
                *where,
            )
            .order_by(available, self._col("id"))
            .limit(1)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=self.model)
        found = session.scalars(query).one_or_none()
        if found is None:
            return None
        row: Any = found
        if row.state == self.leased:
            log.warning(
                "reclaiming %s row after lease expiry",
                self.model.__tablename__,
                extra={"row": row.id, "previous_owner": row.lease_owner},
            )
        row.state = self.leased
        row.lease_owner = owner
        row.lease_expires_at = now + dt.timedelta(seconds=lease_seconds)
        row.attempts += 1
        row.updated_at = now
        return found

    def own(self, session: Session, row_id: int, owner: str) -> R | None:
        """The row if ``owner`` still holds its lease, else None (another worker took it over)."""
        found = session.get(self.model, row_id)
        row: Any = found
        if row is None or row.state != self.leased or row.lease_owner != owner:
            return None
        return found

    def finish(self, row: Any, state: str, now: dt.datetime) -> None:
        """End the lease with ``state`` (done, sent, superseded ...)."""
        row.state = state
        row.lease_owner = None
        row.lease_expires_at = None
        row.updated_at = now

    def fail(
        self,
        row: Any,
        error: str,
        now: dt.datetime,
        *,
        permanent: bool,
        max_attempts: int,
        backoff_base: float,
        backoff_max: float,
    ) -> str:
        """Record a failure on a row we own: back off (``pending``) or dead-letter (``dead``)."""
        row.last_error = error[:4000]
        dead = permanent or row.attempts >= max_attempts
        self.finish(row, "dead" if dead else "pending", now)
        if not dead:
            row.available_at = now + dt.timedelta(
                seconds=backoff_seconds(row.attempts, backoff_base, backoff_max)
            )
        return str(row.state)

    def release(self, sessions: sessionmaker[Session], owner: str, now: dt.datetime) -> int:
        """Give back every row ``owner`` holds (graceful stop); the attempt does not count."""
        with sessions.begin() as session:
            result = session.execute(
                update(self.model)
                .where(self._col("lease_owner") == owner, self._col("state") == self.leased)
                .values(
                    state="pending",
                    lease_owner=None,
                    lease_expires_at=None,
                    attempts=self._col("attempts") - 1,
                    available_at=now,
                )
            )
            return int(getattr(result, "rowcount", 0) or 0)

    @staticmethod
    def requeue(row: Any, now: dt.datetime) -> bool:
        """Put a dead (or backing-off) row back in the queue now, as an operator asked."""
        if row.state not in ("dead", "pending"):
            return False
        row.state = "pending"
        row.attempts = 0
        row.available_at = now
        row.updated_at = now
        return True
