"""Pipeline stage ``publish``: build the study's FHIR resources, validate them, store new versions.

A reader never sees a report whose Observations are missing: the new versions are staged in small
commits and become current together in one short transaction (:mod:`.publish_write`), so that neither
ingest nor a lease renewal waits behind a large report. Content equal to the current version adds no
version (see :mod:`gateway.fhir.store`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pydicom
import pydicom.errors
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.align.model import Link
from gateway.delivery import enqueue_publication
from gateway.errors import PermanentStageError, StageError
from gateway.fhir.endpoint import dicomweb_endpoint
from gateway.fhir.errors import InvalidResource
from gateway.fhir.identifiers import identifier_systems
from gateway.fhir.links import Links, resolve
from gateway.fhir.mapping import (
    InstanceData,
    PatientData,
    Pdf,
    PublishInput,
    SeriesData,
    StudyData,
    build_resources,
    date_warnings,
    dicom_date,
)
from gateway.fhir.order import OrderFacts, apply_order
from gateway.fhir.signoff import SignOff, from_dataset, from_document
from gateway.fhir.store import SaveSummary, current
from gateway.fhir.validate import validate_resource
from gateway.index.models import Document, Instance, Order, Patient, Study
from gateway.pipeline.stage import StageContext
from gateway.pipeline.stages.publish_write import save_publication
from gateway.pipeline.stages.read_report import primary_report
from gateway.settings import Settings

log = logging.getLogger(__name__)


def base_url(settings: Settings) -> str:
    """Where EMRs reach the gateway's HTTP API; links in resources are built on it."""
    if settings.http.public_base_url:
        return settings.http.public_base_url.rstrip("/")
    return f"http://{settings.http.host}:{settings.http_port}"


def study_data(ctx: StageContext, study: Study) -> StudyData:
    systems = identifier_systems()
    with ctx.sessions() as session:
        patient = session.get(Patient, study.patient_fk)
    series: dict[str, tuple[Any, list[InstanceData]]] = {}
    firsts: list[str] = []  # one instance file per series, read only when StudyDate is unusable
    for inst, ser in ctx.instances(study):
        if ser.series_instance_uid not in series and inst.path:
            firsts.append(inst.path)
        entry = series.setdefault(ser.series_instance_uid, (ser, []))
        entry[1].append(
            InstanceData(
                inst.sop_instance_uid, inst.sop_class_uid, inst.instance_number, inst.rows, inst.columns
            )
        )
    return StudyData(
        study_instance_uid=study.study_instance_uid,
        patient=PatientData(
            patient_id=patient.patient_id if patient else "",
            issuer=patient.issuer if patient else "",
            name=patient.name if patient else None,
            birth_date=patient.birth_date if patient else None,
            sex=patient.sex if patient else None,
            system=systems.patient_system(
                patient.issuer if patient else None, ctx.settings.fhir.patient_id_system
            ),
        ),
        accession_system=systems.accession_system(study.accession_issuer, ctx.settings.fhir.accession_system),
        accession_number=study.accession_number,
        other_dates=() if dicom_date(study.study_date) else _other_dates(firsts),
        study_date=study.study_date,
        study_time=study.study_time,
        description=study.description,
        referring_physician=study.referring_physician,
        series=tuple(
            SeriesData(
                s.series_instance_uid, s.series_number, s.modality, s.series_description, tuple(members)
            )
            for s, members in series.values()
        ),
    )


_DATE_TAGS = ["SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime", "ContentDate", "ContentTime"]


def _other_dates(paths: list[str]) -> tuple[tuple[str, str | None], ...]:
    """(DA, TM) of the series, then acquisition, then content, of each series' first instance, in that order
    (PS3.3 C.7.3.1, C.7.6.1): the study's date when StudyDate is missing or invalid."""
    found: dict[str, list[tuple[str, str | None]]] = {"Series": [], "Acquisition": [], "Content": []}
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_DATE_TAGS)
        except (OSError, pydicom.errors.InvalidDicomError):
            continue
        for kind, pairs in found.items():
            date = str(ds.get(f"{kind}Date", "") or "")
            if date:
                pairs.append((date, str(ds.get(f"{kind}Time", "") or "") or None))
    return tuple(pair for pairs in found.values() for pair in pairs)


def _report_pdf(ctx: StageContext, study: Study, primary: Document | None) -> Pdf | None:
    """The PDF of the same report instance as the read document, so that every part of the published
    report comes from one document; without an instance to match (a document read from elsewhere), the
    newest extracted PDF."""
    pdfs = [d for d in ctx.documents(study, stage="extract", kind="report-pdf") if d.path]
    if primary is not None and primary.instance_fk is not None:
        pdfs = [d for d in pdfs if d.instance_fk == primary.instance_fk]
    elif primary is not None and pdfs:
        pdfs = [max(pdfs, key=lambda d: (d.instance_fk or 0, d.id))]
    if not pdfs or not Path(str(pdfs[-1].path)).is_file():
        return None
    chosen = pdfs[-1]
    report_uid = None
    if chosen.instance_fk is not None:
        with ctx.sessions() as session:
            inst = session.get(Instance, chosen.instance_fk)
            report_uid = inst.sop_instance_uid if inst else None
    return Pdf(Path(str(chosen.path)).read_bytes(), report_uid)


def report_signoff(ctx: StageContext, primary: Document | None, document: dict[str, Any] | None) -> SignOff:
    """Who signed the published report and when, from that report's own instance only: an SR's
    VerifyingObserverSequence first, then the sign-off lines of the read text, then the instance's
    ContentDate/ContentTime; times in its TimezoneOffsetFromUTC, else the configured zone."""
    zone = ctx.settings.fhir.timezone
    ds = None
    if primary is not None and primary.instance_fk is not None:
        with ctx.sessions() as session:
            inst = session.get(Instance, primary.instance_fk)
            path = inst.path if inst else None
        if path and Path(path).is_file():
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_SIGNOFF_TAGS)
            except (OSError, pydicom.errors.InvalidDicomError):
                log.warning(
                    "publish: report instance unreadable for its sign-off",
                    extra={"study_fk": primary.study_fk},
                )
    offset = str(ds.get("TimezoneOffsetFromUTC", "") or "") or None if ds is not None else None
    observed = from_dataset(ds, zone) if ds is not None else SignOff()
    verified = SignOff(
        observed.interpreters, observed.organization, observed.time if observed.interpreters else None
    )
    fallback = SignOff((), observed.organization, observed.time)
    return verified.merged(from_document(document, zone, offset)).merged(fallback)


_SIGNOFF_TAGS = [
    "TimezoneOffsetFromUTC",
    "VerifyingObserverSequence",
    "InstitutionName",
    "ContentDate",
    "ContentTime",
]


def publish_input(ctx: StageContext, study: Study) -> PublishInput:
    docs = ctx.documents(study, stage="read_report", kind="document")
    primary = primary_report(docs)
    document = dict(primary.content or {}) if primary is not None else None
    link_docs = ctx.documents(study, stage="align", kind="links")
    links = tuple(
        Link.from_json(x) for x in ((link_docs[-1].content or {}).get("links", []) if link_docs else [])
    )
    drafts = ctx.documents(study, stage="draft_findings", kind="draft")
    draft = dict(drafts[-1].content or {}) if drafts else None
    pdf = _report_pdf(ctx, study, primary)
    signoff = report_signoff(ctx, primary, document)
    systems = identifier_systems()
    return PublishInput(
        signoff=signoff,
        practitioner_identifiers=tuple(
            (name, *found)
            for name in signoff.interpreters
            if (found := systems.practitioner_identifier(name)) is not None
        ),
        organization=ctx.settings.fhir.organization_name,
        study=study_data(ctx, study),
        base_url=base_url(ctx.settings),
        document=document,
        links=links,
        draft=draft,
        pdf=pdf,
        timezone=ctx.settings.fhir.timezone,
        version=ctx.settings.fhir.version,
        structured_findings=ctx.settings.fhir.structured_findings,
    )


def stored(session: Session, summary: SaveSummary) -> list[dict[str, Any]]:
    """The current bodies of a publication's resources, as saved (reconciled status, meta.versionId)."""
    out: list[dict[str, Any]] = []
    for key in summary.versions:
        rtype, rid = key.split("/", 1)
        row = current(session, rtype, rid)
        if row is not None:
            out.append(row.body)
    return out


def order_of(ctx: StageContext, study: Study) -> OrderFacts | None:
    """The newest order received over HL7 for this study (by Study Instance UID, else accession)."""
    keys = [Order.study_instance_uid == study.study_instance_uid]
    if study.accession_number:
        keys.append(Order.accession_number == study.accession_number)
    with ctx.sessions() as session:
        row = session.scalars(
            select(Order).where(or_(*keys)).order_by(Order.updated_at.desc()).limit(1)
        ).first()
    if row is None:
        return None
    return OrderFacts(
        row.placer_number,
        row.filler_number,
        row.requested_procedure,
        row.requested_procedure_id,
        row.order_control,
        row.reason,
    )


def run(ctx: StageContext, study: Study) -> dict[str, Any]:
    inp = publish_input(ctx, study)
    warnings = date_warnings(inp.study)
    for warning in warnings:  # names the attribute only, never its value or the patient
        log.warning("publish: %s", warning, extra={"study_fk": study.id})
    # Reader review (gateway/ui): corrected links and the draft decision.
    from gateway.fhir.mapping.review import apply_draft_review, reviewed_draft
    from gateway.ui.review import review_for_publish

    with ctx.sessions() as session:
        links, draft_review = review_for_publish(session, study.id, ctx.study_version, inp.links)
    inp = dataclasses.replace(inp, links=links)
    if draft_review is not None:
        inp = reviewed_draft(inp, draft_review)
    resources = build_resources(inp)
    if draft_review is not None and inp.draft and inp.draft.get("sentences"):
        resources = apply_draft_review(resources, draft_review, inp)
    resources = apply_order(resources, order_of(ctx, study), inp.version)
    try:
        for resource in resources:
            validate_resource(resource, inp.version)
    except InvalidResource as exc:
        raise PermanentStageError(f"FHIR mapping produced an invalid resource: {exc}") from exc
    endpoint = dicomweb_endpoint(base_url(ctx.settings), ctx.settings.fhir.version)

    def enqueue(session: Session, current_bodies: list[dict[str, Any]]) -> int:
        # Outgoing messages commit with the publication, or not at all (gateway.delivery.outbox).
        return enqueue_publication(
            session,
            ctx.settings.delivery,
            study_fk=study.id,
            # The DICOMweb Endpoint is built when read, never stored; a receiver needs it all the same.
            # Stored links are relative; a pushed copy gets absolute ones, unsigned, since it outlives
            # any short-lived signature (gateway.fhir.links).
            resources=[*(resolve(r, Links(base_url(ctx.settings))) for r in current_bodies), endpoint],
            base_url=f"{base_url(ctx.settings)}/fhir",
        )

    try:
        # Planned outside, staged in small commits, switched in short ones (publish_write).
        summary, queued = save_publication(ctx.sessions, resources, study_fk=study.id, enqueue=enqueue)
    except IntegrityError as exc:  # another publisher of the same study won the race; try again
        raise StageError(f"concurrent publication of {study.study_instance_uid}") from exc
    report = [k for k in summary.versions if k.startswith("DiagnosticReport/")]
    return {
        "resources": len(resources),
        "created": summary.created,
        "updated": summary.updated,
        "unchanged": summary.unchanged,
        "outbox": queued,
        "reports": {k: summary.versions[k] for k in report},
        **({"warnings": warnings} if warnings else {}),
    }
