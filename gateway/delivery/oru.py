"""Channel ``oru``: HL7 v2.5.1 ORU^R01 over MLLP to each configured HL7 destination.

The message is built at publication time (inside the publication's transaction) and stored whole in the
outbox row, so a retry sends the very same bytes with the same MSH-10. Sending is the edge: one
:class:`~gateway.hl7.mllp.MllpClient` per destination, kept open.

ACK handling: AA (or CA) delivered; AE retried with backoff and dead-lettered after ``max_attempts``; AR
dead-lettered at once. The reason in the dead letter is the ACK's MSA-3 and ERR-8 text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway.delivery import outbox
from gateway.delivery.errors import DeliveryError, PermanentDeliveryError
from gateway.delivery.settings import Hl7Destination
from gateway.hl7.errors import Hl7Error
from gateway.hl7.mllp import MllpClient, MllpEndpoint
from gateway.hl7.oru import OruOptions, build_oru, codec
from gateway.index.models import Order, Study

KIND = "oru"


def options(dest: Hl7Destination, message_id: str, visit: dict[str, Any] | None = None) -> OruOptions:
    return OruOptions(
        message_id=message_id,
        sending_application=dest.sending_application,
        sending_facility=dest.sending_facility,
        receiving_application=dest.receiving_application,
        receiving_facility=dest.receiving_facility,
        processing_id=dest.processing_id,
        charset=dest.charset,
        text_type=dest.text_type,
        include_pdf=dest.include_pdf,
        image_links=dest.image_links,
        wado_base_url=dest.wado_base_url,
        visit=visit,
    )


def visit_of_study(session: Session, study_fk: int) -> dict[str, Any] | None:
    """The visit (PV1) of the newest order for the study (by Study Instance UID, else accession)."""
    study = session.get(Study, study_fk)
    if study is None:
        return None
    keys = [Order.study_instance_uid == study.study_instance_uid]
    if study.accession_number:
        keys.append(Order.accession_number == study.accession_number)
    visit = session.scalars(
        select(Order.visit).where(or_(*keys)).order_by(Order.updated_at.desc()).limit(1)
    ).first()
    return dict(visit) if visit else None


def enqueue_report(
    session: Session,
    destinations: Sequence[Hl7Destination],
    *,
    study_fk: int,
    resources: Sequence[dict[str, Any]],
) -> int:
    """Queue one ORU^R01 per destination for the publication's report version. Returns rows queued.

    The message id is derived from (destination, report id, report version): re-running an unchanged
    publication queues nothing new, and a new report version gets a new message.
    """
    report = next((r for r in resources if r["resourceType"] == "DiagnosticReport"), None)
    if report is None:
        return 0
    version = (report.get("meta") or {}).get("versionId", "1")
    order_key = str((report.get("subject") or {}).get("reference", ""))
    visit = visit_of_study(session, study_fk) if destinations else None
    for dest in destinations:
        mid = outbox.message_id(KIND, dest.name, report["id"], version)
        try:
            er7 = build_oru(resources, options(dest, mid, visit))
            payload: dict[str, Any] = {
                "er7": er7,
                "charset": dest.charset,
                "report": f"{report['id']}/{version}",
            }
            dead = None
        except Hl7Error as exc:
            payload, dead = {"report": f"{report['id']}/{version}"}, f"cannot build ORU^R01: {exc}"
        outbox.enqueue(
            session,
            study_fk=study_fk,
            destination=dest.name,
            kind=KIND,
            message_id=mid,
            payload=payload,
            order_key=order_key,
            dead_reason=dead,
        )
    return len(destinations)


class OruSender:
    """Sends stored ORU^R01 messages over MLLP, one open connection per destination."""

    def __init__(self, destinations: Sequence[Hl7Destination]) -> None:
        self._destinations = {d.name: d for d in destinations}
        self._clients: dict[str, MllpClient] = {}

    def _client(self, name: str) -> MllpClient:
        dest = self._destinations.get(name)
        if dest is None:
            raise PermanentDeliveryError(f"HL7 destination {name!r} is not configured")
        client = self._clients.get(name)
        if client is None:
            client = MllpClient(
                MllpEndpoint(
                    host=dest.host,
                    port=dest.port,
                    connect_timeout=dest.connect_timeout,
                    ack_timeout=dest.ack_timeout,
                    tls=dest.tls.enabled,
                    ca=dest.tls.ca,
                    cert=dest.tls.cert,
                    key=dest.tls.key,
                    server_hostname=dest.tls.server_hostname,
                )
            )
            self._clients[name] = client
        return client

    def send(self, destination: str, message_id: str, payload: dict[str, Any]) -> None:
        er7 = payload.get("er7")
        if not isinstance(er7, str):
            raise PermanentDeliveryError("outbox row has no ORU^R01 message")
        charset = str(payload.get("charset", "UNICODE UTF-8"))
        client = self._client(destination)
        try:
            ack = client.exchange(er7.encode(codec(charset)), message_id, codec(charset))
        except Hl7Error as exc:
            raise DeliveryError(str(exc)) from exc
        if ack.accepted:
            return
        reason = f"{ack.code}: {ack.text or 'no reason given'}"
        if ack.rejected:
            raise PermanentDeliveryError(f"receiver rejected the message ({reason})")
        raise DeliveryError(f"receiver could not process the message ({reason})")

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
