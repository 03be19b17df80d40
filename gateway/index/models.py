"""ORM tables of the index.

The schema is owned by Alembic migrations in ``gateway/index/migrations``; these classes mirror it and a test
checks that they agree. Patient-identifying columns (``patient_id``, ``name``, ``birth_date``) are never
logged at INFO.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which stores them naive) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the index; use gateway.index.models.utcnow()")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    pass


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("patient_id", "issuer", name="uq_patient_id_issuer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    issuer: Mapped[str] = mapped_column(String(64), default="")
    name: Mapped[str | None] = mapped_column(String(324))
    birth_date: Mapped[str | None] = mapped_column(String(8))
    sex: Mapped[str | None] = mapped_column(String(16))


class Study(Base):
    """A study and where it stands in its lifecycle.

    ``state``: receiving → stable → processing → done | failed. ``version`` counts how many times the study
    became stable; each version runs the pipeline once, and a late instance reopens the study for the next.
    """

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_fk: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    accession_number: Mapped[str | None] = mapped_column(String(64))
    #: IssuerOfAccessionNumberSequence's local or universal entity ID (identifier system via the site table).
    accession_issuer: Mapped[str | None] = mapped_column(String(64))
    study_id: Mapped[str | None] = mapped_column(String(16))
    study_date: Mapped[str | None] = mapped_column(String(8))
    study_time: Mapped[str | None] = mapped_column(String(32))
    referring_physician: Mapped[str | None] = mapped_column(String(324))
    description: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="receiving", index=True)
    state_reason: Mapped[str | None] = mapped_column(Text)
    stable_reason: Mapped[str | None] = mapped_column(Text, doc="why it last became stable (completion.py)")
    stage: Mapped[str | None] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, default=0)
    last_received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)

    patient: Mapped[Patient] = relationship()


class Series(Base):
    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    body_part: Mapped[str | None] = mapped_column(String(64))
    laterality: Mapped[str | None] = mapped_column(String(16))
    view_position: Mapped[str | None] = mapped_column(String(16))
    series_description: Mapped[str | None] = mapped_column(String(64))
    series_number: Mapped[int | None] = mapped_column(Integer)


class Instance(Base):
    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_fk: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    view_position: Mapped[str | None] = mapped_column(String(16))
    image_laterality: Mapped[str | None] = mapped_column(String(16))
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    window_center: Mapped[float | None] = mapped_column(Float)
    window_width: Mapped[float | None] = mapped_column(Float)
    path: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(64))
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)

    series: Mapped[Series] = relationship()


class Document(Base):
    """An artifact a stage produced for a study: an extracted report, a read document, a draft...

    ``(study_fk, stage, key, study_version)`` is unique, which makes every stage idempotent: a re-run
    replaces its own row instead of adding a copy.
    """

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("study_fk", "stage", "key", "study_version", name="uq_document_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    instance_fk: Mapped[int | None] = mapped_column(ForeignKey("instances.id"))
    stage: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    study_version: Mapped[int] = mapped_column(Integer)
    media_type: Mapped[str] = mapped_column(String(64))
    path: Mapped[str | None] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    content: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Job(Base):
    """One stage of one study version, claimed by a worker under a lease."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("study_fk", "stage", "study_version", name="uq_job_stage_version"),
        Index("ix_jobs_claim", "state", "available_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    stage: Mapped[str] = mapped_column(String(32))
    study_version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class Outbox(Base):
    """Outgoing messages (HL7 to an MLLP peer, FHIR to a sink...), see :mod:`gateway.delivery.outbox`.

    A row is written in the transaction of the publication that causes it. ``message_id`` is stable across
    retries, so a receiver can tell a duplicate; ``order_key`` (the patient) orders delivery per destination.
    ``state``: pending → sending → sent | dead.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("destination", "message_id", name="uq_outbox_message"),
        Index("ix_outbox_claim", "state", "available_at"),
        Index("ix_outbox_order", "destination", "order_key", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_fk: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), index=True)
    destination: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(64))
    order_key: Mapped[str] = mapped_column(String(128), default="", server_default="")
    state: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    available_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


class Order(Base):
    """An imaging order received over HL7 (ORM^O01, OMI^O23); see :mod:`gateway.hl7.orders`."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    accession_number: Mapped[str | None] = mapped_column(String(64), index=True)
    placer_number: Mapped[str | None] = mapped_column(String(64))
    filler_number: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    issuer: Mapped[str] = mapped_column(String(64), default="")
    requested_procedure_id: Mapped[str | None] = mapped_column(String(64))
    requested_procedure: Mapped[str | None] = mapped_column(String(256))
    modality: Mapped[str | None] = mapped_column(String(16))
    study_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    order_control: Mapped[str | None] = mapped_column(String(8))
    #: PV1 of the order or a later ADT (patient class, location, attending, visit number), for the ORU.
    visit: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    message_type: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Mpps(Base):
    """A Modality Performed Procedure Step (PS3.4 F.7) as the modality reported it; see
    :mod:`gateway.dicom.mpps`. ``referenced`` lists the SOP Instance UIDs of its performed series."""

    __tablename__ = "mpps"
    __table_args__ = (UniqueConstraint("sop_instance_uid", name="uq_mpps_sop_instance_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    study_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    referenced: Mapped[list[str]] = mapped_column(JSON, default=list)
    calling_ae: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class PatientMerge(Base):
    """An ADT^A40 merge: ``prior_*`` was merged into ``patient_id``/``issuer``."""

    __tablename__ = "patient_merges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(64), default="")
    prior_patient_id: Mapped[str] = mapped_column(String(64))
    prior_issuer: Mapped[str] = mapped_column(String(64), default="")
    message_id: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Subscription(Base):
    """A FHIR R4 Subscription (Subscriptions Backport IG 1.1, rest-hook); see
    :mod:`gateway.delivery.subscriptions`. ``events`` counts event notifications since it started."""

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    endpoint: Mapped[str] = mapped_column(String(1024))
    payload: Mapped[str] = mapped_column(String(16))
    filter_patient: Mapped[str | None] = mapped_column(String(128))
    filter_category: Mapped[str | None] = mapped_column(String(256))
    heartbeat_period: Mapped[int | None] = mapped_column(Integer)
    headers: Mapped[list[str]] = mapped_column(JSON, default=list)
    events: Mapped[int] = mapped_column(Integer, default=0)
    last_queued_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class FhirResource(Base):
    """Every version of every FHIR resource the gateway publishes; ``is_current`` marks the latest."""

    __tablename__ = "fhir_resources"
    __table_args__ = (
        UniqueConstraint("resource_type", "resource_id", "version_id", name="uq_fhir_version"),
        Index("ix_fhir_current", "resource_type", "is_current"),
        Index("ix_fhir_effective", "resource_type", "effective"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    is_current: Mapped[bool] = mapped_column(default=True)
    study_fk: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), index=True)
    patient_ref: Mapped[str | None] = mapped_column(String(128), index=True)
    status: Mapped[str | None] = mapped_column(String(32))
    code: Mapped[str | None] = mapped_column(String(128))
    category: Mapped[str | None] = mapped_column(String(256))
    effective: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())
    identifiers: Mapped[str | None] = mapped_column(Text, doc="'|'-joined system|value pairs, for search")
    last_updated: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Case-folded name parts (Patient, Practitioner), one per line, for FHIR string search.
    names: Mapped[str | None] = mapped_column(Text, default=None)


# -- review page (gateway/ui): accounts, sessions, reviews, audit ------------------------------------------


class UiUser(Base):
    """A review-page account (``role``: reader or administrator); ``password_hash`` is Argon2id (PHC)."""

    __tablename__ = "ui_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class UiSession(Base):
    """A login. Only the SHA-256 of the cookie value is stored; ``csrf`` is the form token of the session."""

    __tablename__ = "ui_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_fk: Mapped[int] = mapped_column(ForeignKey("ui_users.id"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())


class LinkCorrection(Base):
    """A reader's correction of one sentence→image link: ``new_sop`` None means the link was removed.

    The link is named by its source (report | draft), paragraph, sentence and the instance it pointed to.
    The newest row for a link wins; all rows are kept as the audit trail and as ground truth.
    """

    __tablename__ = "link_corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    source: Mapped[str] = mapped_column(String(16))
    paragraph: Mapped[int | None] = mapped_column(Integer)
    sentence: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text, default="")
    original_sop: Mapped[str | None] = mapped_column(String(64))
    new_sop: Mapped[str | None] = mapped_column(String(64))
    new_series: Mapped[str | None] = mapped_column(String(64))
    user_fk: Mapped[int] = mapped_column(ForeignKey("ui_users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class DraftReview(Base):
    """A reader's decision on the machine-drafted findings: approved | rejected (with the text approved)."""

    __tablename__ = "draft_reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_fk: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    study_version: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16))
    sentences: Mapped[list[str]] = mapped_column(JSON)
    model_name: Mapped[str] = mapped_column(String(128), default="")
    model_version: Mapped[str] = mapped_column(String(128), default="")
    user_fk: Mapped[int] = mapped_column(ForeignKey("ui_users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class UiAuditEvent(Base):
    """Every review action (login, edit, approval, rejection, link correction, retry), who and when."""

    __tablename__ = "ui_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    user_fk: Mapped[int | None] = mapped_column(ForeignKey("ui_users.id"))
    username: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    study_fk: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class FhirIdentifier(Base):
    """One searchable token (system, value) of a FhirResource row: identifier search by index, not by LIKE."""

    __tablename__ = "fhir_identifiers"
    __table_args__ = (Index("ix_fhir_identifier_value", "value", "system"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource_fk: Mapped[int] = mapped_column(ForeignKey("fhir_resources.id"), index=True)
    system: Mapped[str] = mapped_column(String(256), default="")
    value: Mapped[str] = mapped_column(String(256))


class AuditEvent(Base):
    """One read or search of the FHIR API: who (client id), what (resources, patients), when, outcome."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recorded: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    client_id: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    resource_type: Mapped[str | None] = mapped_column(String(64))
    query: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[int] = mapped_column(Integer)
    #: "Type/id" of every resource returned, one per line.
    entities: Mapped[str | None] = mapped_column(Text)
    #: "Patient/id" of every patient whose data was returned, one per line.
    patients: Mapped[str | None] = mapped_column(Text)
