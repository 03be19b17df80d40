"""Storage Commitment Push Model, SCP side (PS3.4 Annex J).

After answering the N-ACTION we check each referenced instance against the index and the disk, then send
N-EVENT-REPORT: event type 1 when all are held, 2 with a Failed SOP Sequence otherwise (PS3.4 J.3.3).

A request must never be left without an answer. The standard lets the requester either wait for the report
on its association or release it and take the report on a new association to its own SCP (PS3.4 J.3.3);
nothing in the request says which, and Orthanc, for one, releases at once. So the N-ACTION is accepted only
when a way back is known:

- the peer's port is configured (``dicom.peers[].port``): the report goes on the requesting association when
  it is still open, otherwise on a new association to that port;
- or the peer is declared to wait (``dicom.peers[].waits_for_commitment``): the report goes on its
  association;
- otherwise the N-ACTION is refused with 0x0110 Processing Failure and an Error Comment naming the setting
  (PS3.7 10.1.4.1.10), so the PACS shows a failure instead of waiting for ever.

Every accepted request is a row of the outbox (kind ``commitment``, destination the calling AE title), written
and leased to this process before the N-ACTION response leaves. The responder thread answers at once; if the
process dies first, the lease expires and the delivery worker sends the report on a new association, with
the outbox's retries, backoff and dead letters (``gateway outbox``). Nothing is kept only in memory.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.delivery import outbox
from gateway.delivery.errors import DeliveryError, PermanentDeliveryError
from gateway.index.models import Instance
from gateway.settings import DicomSettings, Peer, Settings

log = logging.getLogger(__name__)

SOP_CLASS = "1.2.840.10008.1.20.1"
SOP_INSTANCE = "1.2.840.10008.1.20.1.1"
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119
KIND = "commitment"


def commitment_result(
    transaction_uid: str, references: list[tuple[str, str]], held: dict[str, str]
) -> tuple[int, Dataset]:
    """Pure: the event type and Event Information for ``references`` given ``held`` (SOP UID → class)."""
    info = Dataset()
    info.TransactionUID = transaction_uid
    ok, failed = [], []
    for sop_class, sop_uid in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_uid
        if sop_uid not in held:
            item.FailureReason = NO_SUCH_OBJECT_INSTANCE
            failed.append(item)
        elif held[sop_uid] != sop_class:
            item.FailureReason = CLASS_INSTANCE_CONFLICT
            failed.append(item)
        else:
            ok.append(item)
    if ok:
        info.ReferencedSOPSequence = ok
    if failed:
        info.FailedSOPSequence = failed
    return (2 if failed else 1), info


def refusal_comment(calling_ae: str) -> str:
    """The Error Comment (LO, 64 characters) of a refused N-ACTION: what to configure."""
    return f"no reply route: set dicom.peers[].port for {calling_ae}"[:64]


def find_peer(dicom: DicomSettings, calling_ae: str) -> Peer | None:
    return next((p for p in dicom.peers if p.ae_title == calling_ae), None)


def held_instances(sessions: sessionmaker[Session], sop_uids: list[str]) -> dict[str, str]:
    """SOP Instance UID → SOP Class UID for instances that are indexed and whose file exists."""
    out: dict[str, str] = {}
    with sessions() as session:
        for start in range(0, len(sop_uids), 500):
            rows = session.execute(
                select(Instance.sop_instance_uid, Instance.sop_class_uid, Instance.path).where(
                    Instance.sop_instance_uid.in_(sop_uids[start : start + 500])
                )
            )
            for uid, cls, path in rows:
                if Path(path).is_file():
                    out[uid] = cls
    return out


def _result(sessions: sessionmaker[Session], payload: dict[str, Any]) -> tuple[int, Dataset]:
    references = [(str(c), str(u)) for c, u in payload["references"]]
    return commitment_result(
        str(payload["transaction_uid"]), references, held_instances(sessions, [u for _, u in references])
    )


def report_on_new_association(
    dicom: DicomSettings, ae_title: str, calling_ae: str, payload: dict[str, Any], info: Dataset, event: int
) -> None:
    """Send the report to the requester's own SCP (we take the SCP role, PS3.4 J.3.3). Raises DeliveryError
    (PermanentDeliveryError when no port is configured for it)."""
    peer = find_peer(dicom, calling_ae)
    if peer is None or not peer.port:
        raise PermanentDeliveryError(
            f"{calling_ae} released its association before the Storage Commitment report and no port is "
            "configured for it (dicom.peers[].port)"
        )
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = dicom.acse_timeout
    ae.dimse_timeout = dicom.dimse_timeout
    ae.network_timeout = dicom.network_timeout
    ae.add_requested_context(SOP_CLASS)
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = SOP_CLASS
    role.scu_role = False
    role.scp_role = True
    address = str(payload.get("address") or (peer.hosts[0] if peer.hosts else "127.0.0.1"))
    assoc = ae.associate(address, peer.port, ae_title=calling_ae, ext_neg=[role])
    if not assoc.is_established:
        raise DeliveryError(
            f"Storage Commitment report: no association with {calling_ae} at port {peer.port}"
        )
    try:
        status, _reply = assoc.send_n_event_report(info, event, SOP_CLASS, SOP_INSTANCE)
        code = int(status.get("Status", 0xFFFF)) if status else 0xFFFF
        if code != 0:
            raise DeliveryError(f"Storage Commitment report: {calling_ae} answered 0x{code:04X}")
    finally:
        assoc.release()


class CommitmentResponder:
    """Decides whether an N-ACTION can be answered, records it, and reports on the requesting association."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self._settings = settings
        self._sessions = sessions
        self.owner = f"{socket.gethostname()}:{os.getpid()}:commit"

    def refusal(self, calling_ae: str) -> str | None:
        """Why an N-ACTION from ``calling_ae`` cannot be answered, or None when it can."""
        peer = find_peer(self._settings.dicom, calling_ae)
        if peer is not None and (peer.port or peer.waits_for_commitment):
            return None
        return refusal_comment(calling_ae)

    def accept(
        self, transaction_uid: str, references: list[tuple[str, str]], calling_ae: str, address: str
    ) -> outbox.Claimed | None:
        """Record the request in the outbox, leased to this process; None if another holder is on it."""
        payload = {
            "transaction_uid": transaction_uid,
            "references": [[c, u] for c, u in references],
            "address": address,
        }
        return outbox.enqueue_claimed(
            self._sessions,
            destination=calling_ae[:64],
            kind=KIND,
            message_id=outbox.message_id(KIND, calling_ae, transaction_uid),
            payload=payload,
            owner=self.owner,
            lease_seconds=self._settings.delivery.lease_seconds,
        )

    def held(self, sop_uids: list[str]) -> dict[str, str]:
        return held_instances(self._sessions, sop_uids)

    def reply(self, assoc: Any, claimed: outbox.Claimed) -> None:
        """Report on ``assoc`` if it is still open, else on a new association; record the outcome."""
        delivery = self._settings.delivery
        calling_ae = claimed.destination
        try:
            event_type, info = _result(self._sessions, claimed.payload)
            # Let our N-ACTION response leave first.
            deadline = time.monotonic() + 2.0
            while assoc.is_established and time.monotonic() < deadline and assoc.dimse.msg_queue.qsize():
                time.sleep(0.01)
            time.sleep(0.05)
            if assoc.is_established:
                # send_n_event_report returns (status, reply); an empty status means no answer came.
                status, _reply = assoc.send_n_event_report(info, event_type, SOP_CLASS, SOP_INSTANCE)
                if status and int(status.get("Status", 0xFFFF)) == 0:
                    outbox.mark_sent(self._sessions, claimed, self.owner)
                    log.info("storage commitment reported", extra={"event_type": event_type})
                    return
            report_on_new_association(
                self._settings.dicom, self._settings.ae_title, calling_ae, claimed.payload, info, event_type
            )
            outbox.mark_sent(self._sessions, claimed, self.owner)
            log.info("storage commitment reported on a new association", extra={"event_type": event_type})
        except Exception as exc:
            permanent = isinstance(exc, PermanentDeliveryError)
            reason = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
            state = outbox.mark_failed(
                self._sessions, claimed, self.owner, reason, permanent=permanent, settings=delivery
            )
            level = logging.ERROR if state == "dead" else logging.WARNING
            log.log(
                level,
                "storage commitment report not delivered (%s): %s",
                state,
                reason,
                extra={"outbox": claimed.row_id},
            )


class CommitmentSender:
    """The outbox sender of kind ``commitment``: a report whose first try did not get through (or whose
    process died) goes on a new association to the requester's configured port."""

    def __init__(self, dicom: DicomSettings, ae_title: str, sessions: sessionmaker[Session]) -> None:
        self._dicom = dicom
        self._ae_title = ae_title
        self._sessions = sessions

    def send(self, destination: str, message_id: str, payload: dict[str, Any]) -> None:
        event_type, info = _result(self._sessions, payload)
        report_on_new_association(self._dicom, self._ae_title, destination, payload, info, event_type)

    def close(self) -> None:
        pass
