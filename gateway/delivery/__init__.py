"""Outgoing delivery: the durable outbox, its worker, and one module per channel (``oru``: HL7 over MLLP;
``fhir``: transaction Bundles to a FHIR server)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from gateway.delivery.settings import DeliverySettings

__all__ = ["enqueue_publication"]


def enqueue_publication(
    session: Session,
    settings: DeliverySettings,
    *,
    study_fk: int,
    resources: Sequence[dict[str, Any]],
    base_url: str = "",
) -> int:
    """Queue every outgoing message a publication causes, inside the publication's transaction.

    ``resources`` are the current versions as stored (with ``meta.versionId``). Returns rows queued
    (rows already queued for the same message id are not queued again).
    """
    from gateway.delivery import fhir_push, oru, pacs, subscriptions

    queued = pacs.enqueue_report(session, settings.pacs, study_fk=study_fk, resources=resources)
    queued += oru.enqueue_report(session, settings.hl7, study_fk=study_fk, resources=resources)
    queued += fhir_push.enqueue_report(session, settings.fhir, study_fk=study_fk, resources=resources)
    queued += subscriptions.enqueue_report(session, base_url, study_fk=study_fk, resources=resources)
    return queued


def build_senders(
    settings: DeliverySettings, sessions: Any = None, ae_title: str = "GATEWAY", dicom: Any = None
) -> dict[str, Any]:
    """The real sender of each configured channel, keyed by outbox ``kind``. Subscriptions are created at
    run time, so with an index (``sessions``) their sender is always there; so are Storage Commitment
    reports whose first try failed, with ``dicom`` (:class:`gateway.settings.DicomSettings`) for the
    peers' ports."""
    from gateway.delivery import fhir_push, oru, pacs, subscriptions

    senders: dict[str, Any] = {}
    if sessions is not None and dicom is not None:
        from gateway.dicom.commitment import KIND as COMMITMENT
        from gateway.dicom.commitment import CommitmentSender

        senders[COMMITMENT] = CommitmentSender(dicom, ae_title, sessions)
    if settings.pacs:
        senders[pacs.KIND] = pacs.PacsSender(settings.pacs, ae_title)
    if sessions is not None:
        senders[subscriptions.KIND] = subscriptions.SubscriptionSender(sessions)
    if settings.hl7:
        senders[oru.KIND] = oru.OruSender(settings.hl7)
    if settings.fhir:
        senders[fhir_push.KIND] = fhir_push.FhirSender(settings.fhir)
    return senders
