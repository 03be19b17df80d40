"""The outbox: every outgoing message as a durable row, claimed by delivery workers under a lease.

A row is written in the same transaction as the publication that causes it (see
:mod:`gateway.pipeline.stages.publish`), so a message exists exactly when its publication does. Delivery is
at least once: a worker killed after sending but before recording it leaves the row ``sending`` under a lease
that expires, and the next claim sends it again with the same ``message_id`` (MSH-10 for HL7), so the
receiver can tell the duplicate.

Row states::

    pending ──claim──▶ sending ──ok──▶ sent
       ▲                  │
       └──backoff─────────┤ error, attempts left
                          └─ error, no attempts left / permanent ──▶ dead (`gateway outbox retry ID`)
    sending, lease expired (worker died) ──claim──▶ sending (same message id)

Per destination, rows with the same ``order_key`` (the patient) go out in ``id`` order: a row is not
claimed while an earlier row of its key is pending or sending. A dead row no longer holds the others back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from gateway.delivery.settings import DeliverySettings
from gateway.index import queue
from gateway.index.models import Outbox, utcnow
from gateway.index.repo import insert_ignore

_OPEN = ("pending", "sending")
#: The lease mechanics (claim, own, fail, release, requeue) shared with the job table.
QUEUE = queue.LeasedQueue(Outbox, leased="sending")


def message_id(*parts: str | int) -> str:
    """A stable id of at most 20 characters (HL7 2.5.1 MSH-10 is ST(20)) from what identifies a message:
    the same publication for the same destination always gets the same id."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:20].upper()


def backoff_seconds(attempts: int, settings: DeliverySettings) -> float:
    """Exponential backoff after ``attempts`` failed tries: base, 2·base, 4·base ... capped."""
    return queue.backoff_seconds(attempts, settings.backoff_base, settings.backoff_max)


@dataclass(frozen=True)
class Claimed:
    row_id: int
    destination: str
    kind: str
    message_id: str
    payload: dict[str, Any]
    attempts: int


def enqueue(
    session: Session,
    *,
    study_fk: int | None,
    destination: str,
    kind: str,
    message_id: str,
    payload: dict[str, Any],
    order_key: str = "",
    dead_reason: str | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Add a message inside the caller's transaction; the same (destination, message id) is added once.

    ``dead_reason`` records a message that could not even be built for its destination: it is kept, dead,
    so the operator sees why instead of the message silently not existing.
    """
    now = now or utcnow()
    insert_ignore(
        session,
        Outbox,
        {
            "study_fk": study_fk,
            "destination": destination,
            "kind": kind,
            "payload": payload,
            "message_id": message_id,
            "order_key": order_key[:128],
            "state": "dead" if dead_reason else "pending",
            "last_error": dead_reason[:4000] if dead_reason else None,
            "attempts": 0,
            "available_at": now,
            "created_at": now,
            "updated_at": now,
        },
    )


def enqueue_claimed(
    sessions: sessionmaker[Session],
    *,
    destination: str,
    kind: str,
    message_id: str,
    payload: dict[str, Any],
    owner: str,
    lease_seconds: float,
) -> Claimed | None:
    """Add a message already claimed by ``owner``, who tries it at once (the Storage Commitment responder
    answers on the requesting association). Should ``owner`` die, its lease expires and a delivery worker
    sends the message. The same message asked for again is claimed again; None while another holder's
    lease on it is alive."""
    now = utcnow()
    with sessions.begin() as session:
        enqueue(
            session,
            study_fk=None,
            destination=destination,
            kind=kind,
            message_id=message_id,
            payload=payload,
            now=now,
        )
        row = session.scalars(
            select(Outbox).where(Outbox.destination == destination, Outbox.message_id == message_id)
        ).one()
        if (
            row.state == "sending"
            and row.lease_owner != owner
            and row.lease_expires_at is not None
            and row.lease_expires_at > now
        ):
            return None
        if row.state in ("sent", "dead"):
            row.attempts = 0
        row.payload = payload
        row.state = "sending"
        row.lease_owner = owner
        row.lease_expires_at = now + dt.timedelta(seconds=lease_seconds)
        row.attempts += 1
        row.available_at = now
        row.updated_at = now
        row.last_error = None
        return Claimed(row.id, row.destination, row.kind, message_id, payload, row.attempts)


def claim(
    sessions: sessionmaker[Session], owner: str, settings: DeliverySettings, *, kinds: tuple[str, ...]
) -> Claimed | None:
    """Claim the oldest due message of ``kinds`` that no earlier message of its patient holds back."""
    now = utcnow()
    earlier = aliased(Outbox)
    held_back = exists().where(
        earlier.destination == Outbox.destination,
        earlier.order_key == Outbox.order_key,
        earlier.id < Outbox.id,
        earlier.state.in_(_OPEN),
    )
    with sessions.begin() as session:
        row = QUEUE.claim(session, owner, settings.lease_seconds, now, Outbox.kind.in_(kinds), ~held_back)
        if row is None:
            return None
        return Claimed(
            row.id, row.destination, row.kind, row.message_id or str(row.id), row.payload, row.attempts
        )


def _own(session: Session, claimed: Claimed, owner: str) -> Outbox | None:
    return QUEUE.own(session, claimed.row_id, owner)


def mark_sent(sessions: sessionmaker[Session], claimed: Claimed, owner: str) -> bool:
    """Record delivery. False if our lease was lost meanwhile (another worker may send it again)."""
    now = utcnow()
    with sessions.begin() as session:
        row = _own(session, claimed, owner)
        if row is None:
            return False
        QUEUE.finish(row, "sent", now)
        row.sent_at = now
        row.last_error = None
        return True


def mark_failed(
    sessions: sessionmaker[Session],
    claimed: Claimed,
    owner: str,
    reason: str,
    *,
    permanent: bool,
    settings: DeliverySettings,
) -> str:
    """Back off and retry, or dead-letter with ``reason``. Returns the row's new state."""
    now = utcnow()
    with sessions.begin() as session:
        row = _own(session, claimed, owner)
        if row is None:
            return "lost"
        return QUEUE.fail(
            row,
            reason,
            now,
            permanent=permanent,
            max_attempts=settings.max_attempts,
            backoff_base=settings.backoff_base,
            backoff_max=settings.backoff_max,
        )


def release(sessions: sessionmaker[Session], owner: str) -> int:
    """Give back what this worker holds (graceful stop); the attempt does not count."""
    return QUEUE.release(sessions, owner, utcnow())


def retry(sessions: sessionmaker[Session], row_id: int) -> bool:
    """Put a dead (or backing-off) message back in the queue now, as an operator asked."""
    now = utcnow()
    with sessions.begin() as session:
        row = session.get(Outbox, row_id)
        return row is not None and QUEUE.requeue(row, now)


def list_rows(session: Session, *, states: tuple[str, ...] | None = None, limit: int = 500) -> list[Outbox]:
    query = select(Outbox).order_by(Outbox.id.desc()).limit(limit)
    if states:
        query = query.where(Outbox.state.in_(states))
    return list(session.scalars(query))


def as_json(row: Outbox) -> dict[str, Any]:
    """A row for `gateway outbox --json`: no payload (it holds patient data)."""
    return {
        "id": row.id,
        "destination": row.destination,
        "kind": row.kind,
        "message_id": row.message_id,
        "state": row.state,
        "attempts": row.attempts,
        "created_at": row.created_at.isoformat(),
        "available_at": row.available_at.isoformat() if row.available_at else None,
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
        "last_error": row.last_error,
    }


def depth(sessions: sessionmaker[Session]) -> dict[tuple[str, str], int]:
    from sqlalchemy import func

    with sessions() as session:
        rows = session.execute(
            select(Outbox.destination, Outbox.state, func.count()).group_by(Outbox.destination, Outbox.state)
        )
        return {(d, s): int(n) for d, s, n in rows}
