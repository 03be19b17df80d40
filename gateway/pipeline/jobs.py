"""The job table as a durable queue.

A job is one stage of one study version. Workers claim a job under a lease; a worker that dies simply stops
renewing, and once the lease expires any worker reclaims the job. Claims use ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so workers on several hosts never take the same job; on SQLite every transaction begins with
``BEGIN IMMEDIATE`` (see :mod:`gateway.index.db`), which makes the claim a single-writer critical section.

Job states::

    pending ──claim──▶ running ──ok──▶ done ──▶ (next stage pending, or study done)
       ▲                  │
       └──backoff─────────┤ error, attempts left
                          └─ error, no attempts left / permanent ──▶ dead (study failed; `gateway jobs retry`)
    running, study reopened meanwhile ──▶ superseded
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from gateway.index import queue
from gateway.index.models import Job, Study, utcnow
from gateway.index.repo import insert_ignore
from gateway.settings import PipelineSettings

log = logging.getLogger(__name__)
#: The lease mechanics (claim, own, fail, release, requeue) shared with the outbox.
QUEUE = queue.LeasedQueue(Job, leased="running")


def backoff_seconds(attempts: int, settings: PipelineSettings) -> float:
    """Exponential backoff after ``attempts`` failed tries: base, 2·base, 4·base ... capped."""
    return queue.backoff_seconds(attempts, settings.backoff_base, settings.backoff_max)


@dataclass(frozen=True)
class Claimed:
    job_id: int
    study_id: int
    stage: str
    study_version: int
    attempts: int


def enqueue(
    session: Session, study_id: int, stage: str, version: int, *, now: dt.datetime | None = None
) -> None:
    """Add a pending job unless one already exists for this stage and version (idempotent)."""
    now = now or utcnow()
    insert_ignore(
        session,
        Job,
        {
            "study_fk": study_id,
            "stage": stage,
            "study_version": version,
            "state": "pending",
            "attempts": 0,
            "available_at": now,
            "created_at": now,
            "updated_at": now,
        },
    )


def promote_stable(sessions: sessionmaker[Session], stable_age: float, first_stage: str) -> list[int]:
    """Mark quiet studies stable, bump their version and queue the first stage. Returns their ids."""
    now = utcnow()
    cutoff = now - dt.timedelta(seconds=stable_age)
    promoted: list[int] = []
    with sessions.begin() as session:
        candidates = session.scalars(
            select(Study.id).where(Study.state == "receiving", Study.last_received_at <= cutoff).limit(100)
        ).all()
        for study_id in candidates:
            # Conditional update: another worker, or a late instance, may have got there first.
            result = session.execute(
                update(Study)
                .where(Study.id == study_id, Study.state == "receiving", Study.last_received_at <= cutoff)
                .values(
                    state="stable", version=Study.version + 1, updated_at=now, stage=None, state_reason=None
                )
            )
            if getattr(result, "rowcount", 0) != 1:
                continue
            version = session.scalars(select(Study.version).where(Study.id == study_id)).one()
            enqueue(session, study_id, first_stage, version, now=now)
            promoted.append(study_id)
    for study_id in promoted:
        log.info("study stable", extra={"study_id": study_id})
    return promoted


def claim(sessions: sessionmaker[Session], owner: str, settings: PipelineSettings) -> Claimed | None:
    """Claim the oldest runnable job: pending and due, or running with an expired lease."""
    now = utcnow()
    with sessions.begin() as session:
        job = QUEUE.claim(session, owner, settings.lease_seconds, now)
        if job is None:
            return None
        study = session.get(Study, job.study_fk)
        if (
            study is not None
            and study.version == job.study_version
            and study.state in ("stable", "processing")
        ):
            study.state = "processing"
            study.stage = job.stage
            study.updated_at = now
        return Claimed(job.id, job.study_fk, job.stage, job.study_version, job.attempts)


def renew(sessions: sessionmaker[Session], claimed: Claimed, owner: str, lease_seconds: float) -> bool:
    """Extend our lease; False if the job is no longer ours."""
    with sessions.begin() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == claimed.job_id, Job.lease_owner == owner, Job.state == "running")
            .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_seconds))
        )
        return getattr(result, "rowcount", 0) == 1


def _own(session: Session, claimed: Claimed, owner: str) -> Job | None:
    job = QUEUE.own(session, claimed.job_id, owner)
    if job is None:
        log.warning("job lease lost before completion; result discarded", extra={"job": claimed.job_id})
    return job


def complete(
    sessions: sessionmaker[Session],
    claimed: Claimed,
    owner: str,
    result: dict[str, Any],
    next_stage: str | None,
) -> None:
    """Finish a job and queue the next stage, or mark the study done after the last one."""
    now = utcnow()
    with sessions.begin() as session:
        job = _own(session, claimed, owner)
        if job is None:
            return
        QUEUE.finish(job, "done", now)
        job.result = result
        job.last_error = None
        job.finished_at = now
        study = session.get(Study, claimed.study_id)
        current = study is not None and study.version == claimed.study_version and study.state == "processing"
        if next_stage is not None:
            if current:
                enqueue(session, claimed.study_id, next_stage, claimed.study_version, now=now)
        elif current and study is not None:
            study.state = "done"
            study.stage = None
            study.state_reason = None
            study.updated_at = now


def supersede(sessions: sessionmaker[Session], claimed: Claimed, owner: str) -> None:
    """The study was reopened after this job was queued; a newer version will run instead."""
    with sessions.begin() as session:
        job = _own(session, claimed, owner)
        if job is not None:
            now = utcnow()
            QUEUE.finish(job, "superseded", now)
            job.finished_at = now


def fail(
    sessions: sessionmaker[Session],
    claimed: Claimed,
    owner: str,
    error: str,
    *,
    permanent: bool,
    settings: PipelineSettings,
) -> str:
    """Record a failure: back off and retry, or dead-letter. Returns the job's new state."""
    now = utcnow()
    with sessions.begin() as session:
        job = _own(session, claimed, owner)
        if job is None:
            return "lost"
        state = QUEUE.fail(
            job,
            error,
            now,
            permanent=permanent,
            max_attempts=settings.max_attempts,
            backoff_base=settings.backoff_base,
            backoff_max=settings.backoff_max,
        )
        if state == "dead":
            job.finished_at = now
            study = session.get(Study, claimed.study_id)
            if study is not None and study.version == claimed.study_version and study.state == "processing":
                study.state = "failed"
                study.state_reason = f"{claimed.stage}: {error}"[:2000]
                study.updated_at = now
        return state


def release(sessions: sessionmaker[Session], owner: str) -> int:
    """Give back every job this worker holds (graceful shutdown); the attempt does not count."""
    return QUEUE.release(sessions, owner, utcnow())


def retry(sessions: sessionmaker[Session], job_id: int) -> bool:
    """Put a dead (or failed) job back in the queue now, as an operator asked."""
    now = utcnow()
    with sessions.begin() as session:
        job = session.get(Job, job_id)
        if job is None or not QUEUE.requeue(job, now):
            return False
        job.finished_at = None
        study = session.get(Study, job.study_fk)
        if study is not None and study.version == job.study_version and study.state == "failed":
            study.state = "processing"
            study.state_reason = None
            study.stage = job.stage
            study.updated_at = now
        return True


def queue_depth(sessions: sessionmaker[Session]) -> dict[tuple[str, str], int]:
    with sessions() as session:
        rows = session.execute(select(Job.stage, Job.state, func.count()).group_by(Job.stage, Job.state))
        return {(stage, state): int(n) for stage, state, n in rows}


def is_current(sessions: sessionmaker[Session], claimed: Claimed) -> bool:
    with sessions() as session:
        version = session.scalars(select(Study.version).where(Study.id == claimed.study_id)).one_or_none()
        return version == claimed.study_version
