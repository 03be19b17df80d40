"""Keeping what arrived over HL7 in the index: orders, patient updates, merges."""

from __future__ import annotations

import logging

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway.hl7.orders import Inbound
from gateway.index.models import Order, Patient, PatientMerge, utcnow

log = logging.getLogger(__name__)


def store_inbound(session: Session, inbound: Inbound) -> str:
    """Store an order or a patient update inside the caller's transaction; returns what was done."""
    now = utcnow()
    if inbound.order is not None:
        o = inbound.order
        keys = [
            c == v
            for c, v in ((Order.accession_number, o.accession_number), (Order.placer_number, o.placer_number))
            if v
        ]
        row = (
            session.scalars(select(Order).where(or_(*keys)).order_by(Order.id.desc()).limit(1)).first()
            if keys
            else None
        )
        if row is None:
            row = Order(created_at=now, patient_id=o.patient.patient_id, issuer=o.patient.issuer)
            session.add(row)
        row.patient_id, row.issuer = o.patient.patient_id, o.patient.issuer
        row.accession_number = o.accession_number or row.accession_number
        row.placer_number = o.placer_number or row.placer_number
        row.filler_number = o.filler_number or row.filler_number
        row.requested_procedure_id = o.requested_procedure_id or row.requested_procedure_id
        row.requested_procedure = (o.requested_procedure or row.requested_procedure or "")[:256] or None
        row.modality = o.modality or row.modality
        row.study_instance_uid = o.study_instance_uid or row.study_instance_uid
        row.order_control = o.order_control
        row.visit = inbound.visit or row.visit
        row.message_type = inbound.message_type
        row.message_id = inbound.control_id[:64]
        row.updated_at = now
        session.flush()
        return f"order {row.id} ({o.order_control or 'NW'})"
    patient = inbound.patient
    assert patient is not None
    if inbound.merged_from is not None:
        prior = inbound.merged_from
        session.add(
            PatientMerge(
                patient_id=patient.patient_id,
                issuer=patient.issuer,
                prior_patient_id=prior.patient_id,
                prior_issuer=prior.issuer or patient.issuer,
                message_id=inbound.control_id[:64],
                received_at=now,
            )
        )
        moved = 0
        for order in session.scalars(
            select(Order).where(
                Order.patient_id == prior.patient_id, Order.issuer == (prior.issuer or patient.issuer)
            )
        ):
            order.patient_id, order.issuer, order.updated_at = patient.patient_id, patient.issuer, now
            moved += 1
        linked = _link_merged_patients(
            session, prior.patient_id, prior.issuer or patient.issuer, patient.patient_id, patient.issuer
        )
        # No patient identifiers at INFO: the merge row holds them.
        log.info("patient merge recorded (ADT^A40)", extra={"orders_moved": moved, "fhir_patients": linked})
        return "merge"
    if inbound.visit is not None:  # an ADT's PV1: the visit of this patient's orders, for the ORU's PV1
        for order in session.scalars(
            select(Order).where(Order.patient_id == patient.patient_id, Order.issuer == patient.issuer)
        ):
            order.visit, order.updated_at = inbound.visit, now
    known = session.scalars(
        select(Patient).where(Patient.patient_id == patient.patient_id, Patient.issuer == patient.issuer)
    ).first()
    if known is None:
        return "patient not known yet"
    known.name = patient.name or known.name
    known.birth_date = patient.birth_date or known.birth_date
    known.sex = patient.sex or known.sex
    return "patient updated"


def _link_merged_patients(
    session: Session, prior_id: str, prior_issuer: str, new_id: str, new_issuer: str
) -> int:
    """Reflect the merge in the published FHIR Patients (R4 Patient.link): the prior one becomes inactive and
    ``replaced-by`` the surviving one, which ``replaces`` it. New versions, in the caller's transaction."""
    from gateway.fhir import ids
    from gateway.fhir.store import current, save_resources

    old_ref, new_ref = ids.patient_id(prior_id, prior_issuer), ids.patient_id(new_id, new_issuer)
    changed = []
    old_row, new_row = current(session, "Patient", old_ref), current(session, "Patient", new_ref)
    if old_row is not None:
        body = {k: v for k, v in old_row.body.items() if k != "meta"}
        body["active"] = False
        body["link"] = [{"other": {"reference": f"Patient/{new_ref}"}, "type": "replaced-by"}]
        changed.append(body)
    if new_row is not None and old_row is not None:
        body = {k: v for k, v in new_row.body.items() if k != "meta"}
        links = [
            x for x in body.get("link", []) if x.get("other", {}).get("reference") != f"Patient/{old_ref}"
        ]
        body["link"] = [*links, {"other": {"reference": f"Patient/{old_ref}"}, "type": "replaces"}]
        changed.append(body)
    if changed:
        save_resources(session, changed, study_fk=None)
    return len(changed)
