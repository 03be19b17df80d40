"""Storage Commitment Push Model, SCP side (PS3.4 Annex J).

After answering the N-ACTION we check each referenced instance against the index and the disk, then send
N-EVENT-REPORT: event type 1 when all are held, 2 with a Failed SOP Sequence otherwise. The report goes on
the requesting association when it is still open; otherwise over a new association to the peer's own SCP,
when the peer's port is configured (``dicom.peers[].port``).

A request must never be left without an answer (Orthanc, for one, releases the association right after the
N-ACTION response and waits for the report on its own port; with no port configured it showed "Pending"
forever). So when a requester without a configured port released its association before the report could
go out, the result is logged as lost with the fix, the calling AE title is remembered, and every later
N-ACTION from it is refused at once with status 0x0110 and an Error Comment saying why (PS3.7 C.4.2), so the
PACS shows a failure instead of waiting.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.index.models import Instance
from gateway.settings import Settings

log = logging.getLogger(__name__)

SOP_CLASS = "1.2.840.10008.1.20.1"
SOP_INSTANCE = "1.2.840.10008.1.20.1.1"
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119


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


class CommitmentResponder:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self._settings = settings
        self._sessions = sessions
        self._closes_early: set[str] = set()

    def peer_port(self, calling_ae: str) -> int | None:
        peer = next((p for p in self._settings.dicom.peers if p.ae_title == calling_ae and p.port), None)
        return peer.port if peer is not None else None

    def refusal(self, calling_ae: str) -> str | None:
        """Why an N-ACTION from ``calling_ae`` cannot be answered, or None when it can."""
        if self.peer_port(calling_ae) is None and calling_ae in self._closes_early:
            return (
                f"cannot deliver the Storage Commitment result: {calling_ae} releases the association after "
                "N-ACTION and no port is configured for it (dicom.peers[].port)"
            )[:64]
        return None

    def held(self, sop_uids: list[str]) -> dict[str, str]:
        """SOP Instance UID → SOP Class UID for instances that are indexed and whose file exists."""
        out: dict[str, str] = {}
        with self._sessions() as session:
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

    def reply(
        self,
        assoc: Any,
        transaction_uid: str,
        references: list[tuple[str, str]],
        calling_ae: str,
        address: str,
    ) -> None:
        try:
            event_type, info = commitment_result(
                transaction_uid, references, self.held([uid for _, uid in references])
            )
            # Let our N-ACTION response leave first.
            deadline = time.monotonic() + 2.0
            while assoc.is_established and time.monotonic() < deadline and assoc.dimse.msg_queue.qsize():
                time.sleep(0.01)
            time.sleep(0.05)
            if assoc.is_established:
                # send_n_event_report returns (status, reply); an empty status means no answer came.
                status, _reply = assoc.send_n_event_report(info, event_type, SOP_CLASS, SOP_INSTANCE)
                if status.get("Status", 0xFFFF) == 0:
                    log.info("storage commitment reported", extra={"event_type": event_type})
                    return
            self._report_on_new_association(info, event_type, calling_ae, address)
        except Exception:
            log.exception("storage commitment report failed", extra={"transaction": transaction_uid})

    def _report_on_new_association(
        self, info: Dataset, event_type: int, calling_ae: str, address: str
    ) -> None:
        port = self.peer_port(calling_ae)
        if port is None:
            self._closes_early.add(calling_ae)
            log.error(
                "storage commitment result lost: the requester released the association and no port is "
                "configured for it; set dicom.peers[].port for AE %s (its later requests are refused)",
                calling_ae,
            )
            return
        ae = AE(ae_title=self._settings.ae_title)
        ae.add_requested_context(SOP_CLASS)
        # The SCP role is ours on this association: we send N-EVENT-REPORT to the peer (PS3.4 J.3.3).
        from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = SOP_CLASS
        role.scu_role = False
        role.scp_role = True
        assoc = ae.associate(address, port, ae_title=calling_ae, ext_neg=[role])
        if not assoc.is_established:
            log.warning("storage commitment: could not associate with the peer to reply")
            return
        try:
            status, _reply = assoc.send_n_event_report(info, event_type, SOP_CLASS, SOP_INSTANCE)
            if status.get("Status", 0xFFFF) != 0:
                log.warning("storage commitment: the peer did not accept the report")
        finally:
            assoc.release()
