"""Writing a publication in short transactions, so that ingest and lease renewals never wait behind it.

A report with thousands of Observations used to be written in one transaction that held SQLite's write
lock for minutes: C-STOREs waited, and so did every job's lease renewal. Here the work is cut in three:

1. **plan** (no write transaction): read the current version of every resource in bulk and decide, per
   resource, whether its content changed and which version it becomes (the rules of
   :func:`gateway.fhir.store.save_resources`: reconciled report status, unchanged content adds no version);
2. **stage** (small commits of ``STAGE_ROWS`` rows): insert the new versions with ``is_current`` false,
   so searches and reads of current resources do not see them, with their identifier tokens;
3. **switch**: make the staged rows current and the previous ones not, by id, in small commits of
   ``STAGE_ROWS`` - every resource but the reports first, then, in one short last transaction, the
   DiagnosticReports with the outgoing messages (:func:`gateway.delivery.enqueue_publication`). So a
   reader never sees a report whose Observations are missing, and messages leave only for a report that
   is current. (While the switch runs, a search may return some Observations of the new version beside
   others of the old one; the report that lists them switches last.)

A publication that dies between 2 and 3 leaves staged rows that never became current; they are found by
their version being above the current one (or there being no current one) and removed at the next plan.
A concurrent publisher of the same resources makes the switch fail (the previous rows are no longer
current, or a version number is taken); the stage is then retried like any transient failure.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, Table, and_, delete, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from gateway.errors import StageError
from gateway.fhir.store import (
    SaveSummary,
    _content,
    identifier_tokens,
    reconcile_report,
    search_columns,
)
from gateway.index.db import READ_ONLY
from gateway.index.models import FhirIdentifier, FhirResource, utcnow

log = logging.getLogger(__name__)

STAGE_ROWS = 200  # rows per staging (and switching) commit: each holds SQLite's write lock briefly
# Switched last, with the outgoing messages: a report becomes current only once every resource it
# references is.
REPORT_TYPES = frozenset({"DiagnosticReport"})
_KEYS_PER_QUERY = 400  # keys per bulk read (SQLite allows 32,766 bound parameters; two per key here)

# After each of its commits a publication pauses this many times as long as the commit took: SQLite's
# lock is not fair (a waiter polls with growing sleeps), and back-to-back commits would keep a C-STORE or a
# lease renewal from ever getting it. Ingest gets the lock at least two thirds of the time.
YIELD_FACTOR = 2.0

T = TypeVar("T")


class _Paced:
    """``sessions.begin()`` that yields the database to other writers after each commit."""

    def __init__(self, sessions: sessionmaker[Session], factor: float) -> None:
        self._sessions = sessions
        self._factor = factor

    @contextlib.contextmanager
    def begin(self) -> Iterator[Session]:
        started = time.monotonic()
        with self._sessions.begin() as session:
            yield session
        if self._factor:
            time.sleep(self._factor * (time.monotonic() - started))


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


@dataclass(frozen=True)
class Planned:
    """One new resource version: what to insert and which row it replaces (None for a new resource)."""

    resource_type: str
    resource_id: str
    version: int
    body: dict[str, Any]
    previous_id: int | None


@dataclass
class Plan:
    versions: list[Planned]
    summary: SaveSummary
    bodies: list[dict[str, Any]]  # every resource of the publication as it will be current
    stale_ids: list[int]  # staged rows of an earlier attempt that never became current


def plan(session: Session, resources: Sequence[dict[str, Any]], now: dt.datetime) -> Plan:
    """Decide the new versions; reads only (run it outside any write transaction)."""
    fr = _table(FhirResource)
    keys = list(dict.fromkeys((str(r["resourceType"]), str(r["id"])) for r in resources))
    rows: dict[tuple[str, str], list[Any]] = {}
    for part in _chunks(keys, _KEYS_PER_QUERY):
        found = session.execute(
            select(fr.c.id, fr.c.resource_type, fr.c.resource_id, fr.c.version_id, fr.c.is_current).where(
                or_(*(and_(fr.c.resource_type == t, fr.c.resource_id == i) for t, i in part))
            )
        )
        for row in found:
            rows.setdefault((row.resource_type, row.resource_id), []).append(row)
    current_ids: dict[tuple[str, str], Any] = {}
    stale: list[int] = []
    for key, versions in rows.items():
        cur = [r for r in versions if r.is_current]
        top = cur[0].version_id if cur else 0
        stale += [r.id for r in versions if not r.is_current and r.version_id > top]
        if cur:
            current_ids[key] = cur[0]
    bodies_now: dict[int, dict[str, Any]] = {}
    ids = [r.id for r in current_ids.values()]
    for part_ids in _chunks(ids, _KEYS_PER_QUERY):
        for row_id, body in session.execute(select(fr.c.id, fr.c.body).where(fr.c.id.in_(part_ids))):
            bodies_now[int(row_id)] = body
    summary = SaveSummary()
    planned: list[Planned] = []
    bodies: list[dict[str, Any]] = []
    for resource in resources:
        rtype, rid = str(resource["resourceType"]), str(resource["id"])
        key = (rtype, rid)
        held = current_ids.get(key)
        previous = bodies_now.get(int(held.id)) if held is not None else None
        body = reconcile_report(dict(resource), previous)
        name = f"{rtype}/{rid}"
        if held is not None and previous is not None and _content(previous) == _content(body):
            summary.unchanged += 1
            summary.versions[name] = int(held.version_id)
            bodies.append(previous)
            continue
        version = 1 if held is None else int(held.version_id) + 1
        body["meta"] = {"versionId": str(version), "lastUpdated": now.isoformat(timespec="milliseconds")}
        planned.append(Planned(rtype, rid, version, body, int(held.id) if held is not None else None))
        bodies.append(body)
        if held is None:
            summary.created += 1
        else:
            summary.updated += 1
        summary.versions[name] = version
    return Plan(planned, summary, bodies, stale)


def save_publication(
    sessions: sessionmaker[Session],
    resources: Sequence[dict[str, Any]],
    *,
    study_fk: int,
    enqueue: Callable[[Session, list[dict[str, Any]]], int],
    now: dt.datetime | None = None,
) -> tuple[SaveSummary, int]:
    """Plan, stage and switch a publication (see the module docstring); returns (summary, rows queued).

    ``enqueue`` queues the outgoing messages inside the switch transaction, given the current bodies.
    """
    now = now or utcnow()
    bind = sessions.kw.get("bind")
    # A read-only transaction: on SQLite a plain one would begin IMMEDIATE and hold the write lock.
    reads = sessions
    if isinstance(bind, Engine):
        reads = sessionmaker(bind.execution_options(**{READ_ONLY: True}))
    with reads() as session:
        the_plan = plan(session, resources, now)
    # PostgreSQL locks rows, not the database: nothing to yield there.
    sqlite = isinstance(bind, Engine) and bind.dialect.name == "sqlite"
    paced = _Paced(sessions, YIELD_FACTOR if sqlite else 0.0)
    fr, fi = _table(FhirResource), _table(FhirIdentifier)
    for stale in _chunks(the_plan.stale_ids, STAGE_ROWS):
        with paced.begin() as session:
            session.execute(delete(fi).where(fi.c.resource_fk.in_(stale)))
            session.execute(delete(fr).where(fr.c.id.in_(stale), fr.c.is_current.is_(False)))
    staged: list[int] = []
    for part in _chunks(the_plan.versions, STAGE_ROWS):
        with paced.begin() as session:
            conn = session.connection()
            values = [
                {
                    "resource_type": p.resource_type,
                    "resource_id": p.resource_id,
                    "version_id": p.version,
                    "is_current": False,
                    "study_fk": study_fk,
                    "last_updated": now,
                    "body": p.body,
                    "names": None,
                    **search_columns(p.body),
                }
                for p in part
            ]
            ids = [
                int(i)
                for i in conn.execute(
                    insert(fr).returning(fr.c.id, sort_by_parameter_order=True), values
                ).scalars()
            ]
            tokens = [
                {"resource_fk": row_id, "system": system, "value": value}
                for row_id, v in zip(ids, values, strict=True)
                for system, value in identifier_tokens(v["identifiers"])
            ]
            if tokens:
                conn.execute(insert(fi), tokens)
            staged += ids
    new_ids = dict(zip(((p.resource_type, p.resource_id) for p in the_plan.versions), staged, strict=True))
    parts = [p for p in the_plan.versions if p.resource_type not in REPORT_TYPES]
    reports = [p for p in the_plan.versions if p.resource_type in REPORT_TYPES]
    switched: list[Planned] = []
    try:
        for part in _chunks(parts, STAGE_ROWS):
            with paced.begin() as session:
                _switch(session, part, new_ids)
            switched += part
        with paced.begin() as session:
            _switch(session, reports, new_ids)
            queued = enqueue(session, the_plan.bodies)
    except BaseException:
        # Back to the previous versions, then the staged rows go (best effort; what a killed process
        # leaves, the next plan removes, and the retried stage switches again).
        _switch_back(paced, switched, new_ids)
        _discard(paced, staged)
        raise
    return the_plan.summary, queued


def _switch_back(sessions: _Paced, switched: list[Planned], new_ids: dict[tuple[str, str], int]) -> None:
    fr = _table(FhirResource)
    try:
        for part in _chunks(switched, STAGE_ROWS):
            with sessions.begin() as session:
                conn = session.connection()
                ids = [new_ids[(p.resource_type, p.resource_id)] for p in part]
                conn.execute(update(fr).where(fr.c.id.in_(ids)).values(is_current=False))
                previous = [p.previous_id for p in part if p.previous_id is not None]
                if previous:
                    conn.execute(update(fr).where(fr.c.id.in_(previous)).values(is_current=True))
    except Exception:
        log.warning("a failed publication could not be switched back; the retry completes it", exc_info=True)


def _switch(session: Session, versions: Sequence[Planned], new_ids: dict[tuple[str, str], int]) -> None:
    """Make ``versions`` current and their previous versions not, in the caller's transaction."""
    fr = _table(FhirResource)
    conn = session.connection()
    previous = [p.previous_id for p in versions if p.previous_id is not None]
    if previous:
        done = conn.execute(
            update(fr).where(fr.c.id.in_(previous), fr.c.is_current.is_(True)).values(is_current=False)
        )
        if getattr(done, "rowcount", len(previous)) != len(previous):
            raise StageError("a resource of this publication was changed by another publisher")
    ids = [new_ids[(p.resource_type, p.resource_id)] for p in versions]
    if ids:
        conn.execute(update(fr).where(fr.c.id.in_(ids)).values(is_current=True))


def _discard(sessions: _Paced, staged: list[int]) -> None:
    """Remove staged rows of a publication whose switch failed (small commits, best effort)."""
    fr, fi = _table(FhirResource), _table(FhirIdentifier)
    try:
        for part in _chunks(staged, STAGE_ROWS):
            with sessions.begin() as session:
                session.execute(delete(fi).where(fi.c.resource_fk.in_(part)))
                session.execute(delete(fr).where(fr.c.id.in_(part), fr.c.is_current.is_(False)))
    except Exception:
        log.warning("staged resources of a failed publication left for the next attempt", exc_info=True)
