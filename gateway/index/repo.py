"""Index operations used by the SCP, the worker and the command line.

Each function takes an open :class:`~sqlalchemy.orm.Session` inside the caller's transaction, so the caller
decides what commits together. Inserts that can race between associations or hosts use
``INSERT ... ON CONFLICT DO NOTHING`` followed by a select, which works on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway.dicom.attributes import InstanceAttributes
from gateway.index.models import Base, Document, Instance, Job, Patient, Series, Study, utcnow


def insert_ignore(session: Session | Connection, model: type[Base], values: dict[str, Any]) -> None:
    dialect = session.dialect.name if isinstance(session, Connection) else session.get_bind().dialect.name
    table = model
    if dialect == "postgresql":
        session.execute(postgresql.insert(table).values(**values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        session.execute(sqlite.insert(table).values(**values).on_conflict_do_nothing())
    else:  # pragma: no cover - only the two supported back ends
        raise RuntimeError(f"unsupported database {dialect}")


def find_instance(session: Session, sop_instance_uid: str) -> Instance | None:
    return session.scalars(
        select(Instance).where(Instance.sop_instance_uid == sop_instance_uid)
    ).one_or_none()


@dataclass(frozen=True)
class RecordedInstance:
    study_fk: int
    reopened: bool
    new_instance: bool


class IdCache:
    """Row ids of patients, studies and series this process has already indexed.

    Ids never change once a row exists (the gateway deletes nothing), so a C-STORE of the 2nd..Nth instance
    of a series costs two statements instead of eight. Shared by the associations of one SCP process.
    An id learnt inside a transaction stays private to that thread until :meth:`commit`: a transaction that
    rolls back must not leave ids of rows that never came to exist.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._ids: dict[tuple[str, ...], int] = {}
        self._local = threading.local()

    def _pending(self) -> dict[tuple[str, ...], int]:
        pending: dict[tuple[str, ...], int] | None = getattr(self._local, "pending", None)
        if pending is None:
            pending = self._local.pending = {}
        return pending

    def get(self, key: tuple[str, ...]) -> int | None:
        with self._lock:
            found = self._ids.get(key)
        return found if found is not None else self._pending().get(key)

    def put(self, key: tuple[str, ...], value: int) -> None:
        self._pending()[key] = value

    def commit(self) -> None:
        """The transaction that learnt the pending ids committed: share them."""
        pending = self._pending()
        with self._lock:
            if len(self._ids) + len(pending) > self._limit:
                self._ids.clear()
            self._ids.update(pending)
        pending.clear()

    def discard(self) -> None:
        """The transaction rolled back: forget what it learnt."""
        self._pending().clear()


def _study_fields(attrs: InstanceAttributes) -> dict[str, Any]:
    return {
        "accession_number": attrs.accession_number,
        "accession_issuer": attrs.accession_issuer,
        "study_id": attrs.study_id,
        "study_date": attrs.study_date,
        "study_time": attrs.study_time,
        "referring_physician": attrs.referring_physician,
        "description": attrs.study_description,
    }


def _patient_fk(session: Connection, attrs: InstanceAttributes, cache: IdCache) -> int:
    key = ("patient", attrs.issuer_of_patient_id, attrs.patient_id)
    cached = cache.get(key)
    if cached is not None:
        return cached
    insert_ignore(
        session,
        Patient,
        {
            "patient_id": attrs.patient_id,
            "issuer": attrs.issuer_of_patient_id,
            "name": attrs.patient_name,
            "birth_date": attrs.patient_birth_date,
            "sex": attrs.patient_sex,
        },
    )
    found = session.scalars(
        select(Patient.id).where(
            Patient.patient_id == attrs.patient_id, Patient.issuer == attrs.issuer_of_patient_id
        )
    ).one()
    cache.put(key, found)
    return found


def _study_fk(session: Connection, attrs: InstanceAttributes, cache: IdCache, now: dt.datetime) -> int:
    key = ("study", attrs.study_instance_uid)
    cached = cache.get(key)
    if cached is not None:
        return cached
    patient_fk = _patient_fk(session, attrs, cache)
    insert_ignore(
        session,
        Study,
        {
            "study_instance_uid": attrs.study_instance_uid,
            "patient_fk": patient_fk,
            "state": "receiving",
            "version": 0,
            "last_received_at": now,
            "created_at": now,
            "updated_at": now,
            **_study_fields(attrs),
        },
    )
    study = session.execute(
        select(Study.id, *[getattr(Study, f) for f in _study_fields(attrs)]).where(
            Study.study_instance_uid == attrs.study_instance_uid
        )
    ).one()
    # Fill attributes that an earlier instance lacked (first instance without an accession number, say).
    missing = {f: v for f, v in _study_fields(attrs).items() if v is not None and getattr(study, f) is None}
    if missing:
        session.execute(update(Study).where(Study.id == study.id).values(**missing))
    cache.put(key, study.id)
    return int(study.id)


def _series_fk(session: Connection, attrs: InstanceAttributes, study_fk: int, cache: IdCache) -> int:
    key = ("series", attrs.series_instance_uid)
    cached = cache.get(key)
    if cached is not None:
        return cached
    insert_ignore(
        session,
        Series,
        {
            "series_instance_uid": attrs.series_instance_uid,
            "study_fk": study_fk,
            "modality": attrs.modality,
            "body_part": attrs.body_part,
            "laterality": attrs.laterality,
            "view_position": attrs.view_position,
            "series_description": attrs.series_description,
            "series_number": attrs.series_number,
        },
    )
    found = session.scalars(
        select(Series.id).where(Series.series_instance_uid == attrs.series_instance_uid)
    ).one()
    cache.put(key, found)
    return found


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def record_instance(
    session: Session,
    attrs: InstanceAttributes,
    *,
    transfer_syntax_uid: str,
    path: str,
    size: int,
    digest: str,
    calling_ae: str | None,
    now: dt.datetime | None = None,
    cache: IdCache | None = None,
) -> RecordedInstance:
    """Index one stored instance; reopen its study if it had become stable or finished."""
    row = InstanceRow(attrs, transfer_syntax_uid, path, size, digest, calling_ae)
    return record_instances(session.connection(), [row], now=now, cache=cache)[0]


@dataclass(frozen=True)
class InstanceRow:
    """One stored instance to index: its attributes and where and how it was kept."""

    attrs: InstanceAttributes
    transfer_syntax_uid: str
    path: str
    size: int
    digest: str
    calling_ae: str | None


def record_instances(
    conn: Connection,
    rows: list[InstanceRow],
    *,
    now: dt.datetime | None = None,
    cache: IdCache | None = None,
) -> list[RecordedInstance]:
    """Index stored instances in the caller's transaction; reopen each study that had become stable.

    Written with Core statements rather than ORM objects, and batched: this runs for every C-STORE, and a
    group committer passes the instances of several associations at once. Per group: one statement per
    new patient, study or series (ids are cached), one UPDATE per study, one SELECT for the instances
    already known, and one executemany INSERT.
    """
    now = now or utcnow()
    cache = cache if cache is not None else IdCache()
    studies, instances = _table(Study), _table(Instance)
    study_fks: list[int] = []
    reopened: dict[int, bool] = {}
    for row in rows:
        study_fk = _study_fk(conn, row.attrs, cache, now)
        study_fks.append(study_fk)
        if study_fk in reopened:
            continue
        # The common case, a study still receiving, is one UPDATE; only a reopen needs the second.
        touched = conn.execute(
            update(studies)
            .where(studies.c.id == study_fk, studies.c.state == "receiving")
            .values(last_received_at=now, updated_at=now)
        )
        reopened[study_fk] = getattr(touched, "rowcount", 1) == 0
        if reopened[study_fk]:
            conn.execute(
                update(studies)
                .where(studies.c.id == study_fk)
                .values(
                    state="receiving", state_reason=None, stage=None, last_received_at=now, updated_at=now
                )
            )
    values = [
        {
            "sop_instance_uid": row.attrs.sop_instance_uid,
            "series_fk": _series_fk(conn, row.attrs, study_fk, cache),
            "study_fk": study_fk,
            "sop_class_uid": row.attrs.sop_class_uid,
            "transfer_syntax_uid": row.transfer_syntax_uid,
            "instance_number": row.attrs.instance_number,
            "view_position": row.attrs.view_position,
            "image_laterality": row.attrs.image_laterality,
            "rows": row.attrs.rows,
            "columns": row.attrs.columns,
            "window_center": row.attrs.window_center,
            "window_width": row.attrs.window_width,
            "path": row.path,
            "size": row.size,
            "digest": row.digest,
            "calling_ae": row.calling_ae,
            "received_at": now,
        }
        for row, study_fk in zip(rows, study_fks, strict=True)
    ]
    uids = list(dict.fromkeys(str(v["sop_instance_uid"]) for v in values))
    known = conn.execute(
        select(instances.c.sop_instance_uid, instances.c.id).where(instances.c.sop_instance_uid.in_(uids))
    )
    existing: dict[str, int] = {str(uid): int(id_) for uid, id_ in known}
    new = [v for v in values if v["sop_instance_uid"] not in existing]
    if new:
        conn.execute(insert(instances), new)
    for v in values:
        found = existing.get(str(v["sop_instance_uid"]))
        if found is not None:
            changes = {k: x for k, x in v.items() if k != "sop_instance_uid"}
            conn.execute(update(instances).where(instances.c.id == found).values(changes))
    return [
        RecordedInstance(
            study_fk=fk, reopened=reopened[fk], new_instance=str(v["sop_instance_uid"]) not in existing
        )
        for v, fk in zip(values, study_fks, strict=True)
    ]


@dataclass(frozen=True)
class StudySummary:
    study_instance_uid: str
    patient_id: str
    accession_number: str | None
    study_date: str | None
    state: str
    stage: str | None
    state_reason: str | None
    version: int
    instances: int
    documents: int
    updated_at: dt.datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "study_instance_uid": self.study_instance_uid,
            "patient_id": self.patient_id,
            "accession_number": self.accession_number,
            "study_date": self.study_date,
            "state": self.state,
            "stage": self.stage,
            "reason": self.state_reason,
            "version": self.version,
            "instances": self.instances,
            "documents": self.documents,
            "updated_at": self.updated_at.isoformat(),
        }


def list_studies(session: Session, *, limit: int = 1000) -> list[StudySummary]:
    instance_counts = (
        select(Instance.study_fk, func.count(Instance.id).label("n")).group_by(Instance.study_fk).subquery()
    )
    # Report documents of the study's current version: a reopened study does not count its reports twice.
    document_counts = (
        select(Document.study_fk, Document.study_version, func.count(Document.id).label("n"))
        .where(Document.stage == "extract", Document.kind != "features")  # matching features are no report
        .group_by(Document.study_fk, Document.study_version)
        .subquery()
    )
    query = (
        select(Study, Patient.patient_id, instance_counts.c.n, document_counts.c.n)
        .join(Patient, Study.patient_fk == Patient.id)
        .outerjoin(instance_counts, instance_counts.c.study_fk == Study.id)
        .outerjoin(
            document_counts,
            (document_counts.c.study_fk == Study.id) & (document_counts.c.study_version == Study.version),
        )
        .order_by(Study.updated_at.desc())
        .limit(limit)
    )
    out = []
    for study, patient_id, n_instances, n_documents in session.execute(query).tuples():
        out.append(
            StudySummary(
                study_instance_uid=study.study_instance_uid,
                patient_id=patient_id,
                accession_number=study.accession_number,
                study_date=study.study_date,
                state=study.state,
                stage=study.stage,
                state_reason=study.state_reason,
                version=study.version,
                instances=n_instances or 0,
                documents=n_documents or 0,
                updated_at=study.updated_at,
            )
        )
    return out


def list_jobs(session: Session, *, states: tuple[str, ...] | None = None, limit: int = 500) -> list[Job]:
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if states:
        query = query.where(Job.state.in_(states))
    return list(session.scalars(query))
