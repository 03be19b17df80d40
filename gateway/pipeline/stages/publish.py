"""Pipeline stage ``publish``: build the study's FHIR resources, validate them, store new versions.

All resources of one publication are written in one transaction, so a reader never sees a report whose
Observations are missing. Content equal to the current version adds no version (see
:mod:`gateway.fhir.store`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.align.model import Link
from gateway.delivery import enqueue_publication
from gateway.errors import PermanentStageError, StageError
from gateway.fhir.errors import InvalidResource
from gateway.fhir.mapping import (
    InstanceData,
    PatientData,
    Pdf,
    PublishInput,
    SeriesData,
    StudyData,
    build_resources,
)
from gateway.fhir.order import OrderFacts, apply_order
from gateway.fhir.store import SaveSummary, current, save_resources
from gateway.fhir.validate import validate_resource
from gateway.index.models import Instance, Order, Patient, Study
from gateway.pipeline.stage import StageContext
from gateway.pipeline.stages.read_report import primary_report
from gateway.settings import Settings


def base_url(settings: Settings) -> str:
    """Where EMRs reach the gateway's HTTP API; links in resources are built on it."""
    if settings.http.public_base_url:
        return settings.http.public_base_url.rstrip("/")
    return f"http://{settings.http.host}:{settings.http_port}"


def study_data(ctx: StageContext, study: Study) -> StudyData:
    with ctx.sessions() as session:
        patient = session.get(Patient, study.patient_fk)
    series: dict[str, tuple[Any, list[InstanceData]]] = {}
    for inst, ser in ctx.instances(study):
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
        ),
        accession_number=study.accession_number,
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
    pdf = None
    pdfs = ctx.documents(study, stage="extract", kind="report-pdf")
    if pdfs and pdfs[-1].path and Path(pdfs[-1].path).is_file():
        report_uid = None
        if pdfs[-1].instance_fk is not None:
            with ctx.sessions() as session:
                inst = session.get(Instance, pdfs[-1].instance_fk)
                report_uid = inst.sop_instance_uid if inst else None
        pdf = Pdf(Path(pdfs[-1].path).read_bytes(), report_uid)
    return PublishInput(
        study=study_data(ctx, study),
        base_url=base_url(ctx.settings),
        document=document,
        links=links,
        draft=draft,
        pdf=pdf,
        timezone=ctx.settings.fhir.timezone,
        version=ctx.settings.fhir.version,
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
    )


def run(ctx: StageContext, study: Study) -> dict[str, Any]:
    inp = publish_input(ctx, study)
    # -- reader review (gateway/ui): corrected links, the draft decision; the DICOMweb endpoint --------------
    from gateway.fhir.mapping import add_wado_endpoint, apply_draft_review
    from gateway.ui.review import review_for_publish

    with ctx.sessions() as session:
        links, draft_review = review_for_publish(session, study.id, ctx.study_version, inp.links)
    inp = dataclasses.replace(inp, links=links)
    resources = add_wado_endpoint(build_resources(inp), inp)
    if draft_review is not None and inp.draft and inp.draft.get("sentences"):
        resources = apply_draft_review(resources, draft_review, inp)
    # -- end reader review and endpoint ---------------------------------------------------------------------
    resources = apply_order(resources, order_of(ctx, study))
    try:
        for resource in resources:
            validate_resource(resource, inp.version)
    except InvalidResource as exc:
        raise PermanentStageError(f"FHIR mapping produced an invalid resource: {exc}") from exc
    try:
        with ctx.sessions.begin() as session:
            summary = save_resources(session, resources, study_fk=study.id)
            # Outgoing messages commit with the publication, or not at all (gateway.delivery.outbox).
            queued = enqueue_publication(
                session,
                ctx.settings.delivery,
                study_fk=study.id,
                resources=stored(session, summary),
                base_url=f"{base_url(ctx.settings)}/fhir",
            )
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
    }
