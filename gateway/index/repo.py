"""Index operations used by the SCP, the worker and the command line.

Each function takes an open :class:`~sqlalchemy.orm.Session` inside the caller's transaction, so the caller
decides what commits together. Inserts that can race between associations or hosts use
``INSERT ... ON CONFLICT DO NOTHING`` followed by a select, which works on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway.dicom.attributes import InstanceAttributes
from gateway.index.models import Base, Document, Instance, Job, Patient, Series, Study, utcnow


def insert_ignore(session: Session, model: type[Base], values: dict[str, Any]) -> None:
    dialect = session.get_bind().dialect.name
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
) -> RecordedInstance:
    """Index one stored instance; reopen its study if it had become stable or finished."""
    now = now or utcnow()
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
    patient_fk = session.scalars(
        select(Patient.id).where(
            Patient.patient_id == attrs.patient_id, Patient.issuer == attrs.issuer_of_patient_id
        )
    ).one()
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
        },
    )
    study = session.scalars(
        select(Study).where(Study.study_instance_uid == attrs.study_instance_uid).with_for_update()
    ).one()
    reopened = study.state != "receiving"
    study.state = "receiving"
    if reopened:
        study.state_reason = None
        study.stage = None
    study.last_received_at = now
    study.updated_at = now
    for field, value in (
        ("accession_number", attrs.accession_number),
        ("study_id", attrs.study_id),
        ("study_date", attrs.study_date),
        ("study_time", attrs.study_time),
        ("referring_physician", attrs.referring_physician),
        ("description", attrs.study_description),
    ):
        if value is not None and getattr(study, field) is None:
            setattr(study, field, value)

    insert_ignore(
        session,
        Series,
        {
            "series_instance_uid": attrs.series_instance_uid,
            "study_fk": study.id,
            "modality": attrs.modality,
            "body_part": attrs.body_part,
            "laterality": attrs.laterality,
            "view_position": attrs.view_position,
            "series_description": attrs.series_description,
            "series_number": attrs.series_number,
        },
    )
    series_fk = session.scalars(
        select(Series.id).where(Series.series_instance_uid == attrs.series_instance_uid)
    ).one()

    existing = find_instance(session, attrs.sop_instance_uid)
    row = existing or Instance(sop_instance_uid=attrs.sop_instance_uid)
    row.series_fk = series_fk
    row.study_fk = study.id
    row.sop_class_uid = attrs.sop_class_uid
    row.transfer_syntax_uid = transfer_syntax_uid
    row.instance_number = attrs.instance_number
    row.view_position = attrs.view_position
    row.image_laterality = attrs.image_laterality
    row.rows = attrs.rows
    row.columns = attrs.columns
    row.window_center = attrs.window_center
    row.window_width = attrs.window_width
    row.path = path
    row.size = size
    row.digest = digest
    row.calling_ae = calling_ae
    row.received_at = now
    if existing is None:
        session.add(row)
    session.flush()
    return RecordedInstance(study_fk=study.id, reopened=reopened, new_instance=existing is None)


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
    document_counts = (
        select(Document.study_fk, func.count(Document.id).label("n"))
        .where(Document.stage == "extract")
        .group_by(Document.study_fk)
        .subquery()
    )
    query = (
        select(Study, Patient.patient_id, instance_counts.c.n, document_counts.c.n)
        .join(Patient, Study.patient_fk == Patient.id)
        .outerjoin(instance_counts, instance_counts.c.study_fk == Study.id)
        .outerjoin(document_counts, document_counts.c.study_fk == Study.id)
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
