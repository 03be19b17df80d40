"""Modality Performed Procedure Step SCP (PS3.4 Annex F.7, SOP Class 1.2.840.10008.3.1.2.3.3).

The modality says N-CREATE when it starts a procedure step (status IN PROGRESS) and N-SET when it ends it
(COMPLETED or DISCONTINUED), listing in PerformedSeriesSequence the instances it produced. We keep the
step's status, its study, those instance UIDs and a discontinuation reason; :mod:`gateway.dicom.completion`
turns them into "this study is complete" (or failed). The handlers return the DIMSE status themselves:

- N-CREATE of a known instance → 0x0111 (duplicate SOP Instance); a status other than IN PROGRESS → 0x0106.
- N-SET of an unknown instance → 0x0112; of a step already COMPLETED or DISCONTINUED → 0xC310 (PS3.4
  F.7.2.2.4.2, "may no longer be updated").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gateway.index.models import Mpps, utcnow

log = logging.getLogger(__name__)

SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
FINAL = (COMPLETED, DISCONTINUED)

SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
DUPLICATE_INSTANCE = 0x0111
NO_SUCH_INSTANCE = 0x0112
INVALID_VALUE = 0x0106
MAY_NO_LONGER_BE_UPDATED = 0xC310


@dataclass(frozen=True)
class StepData:
    """What the gateway keeps of an MPPS dataset (pure extraction)."""

    status: str | None
    study_instance_uid: str | None
    referenced: tuple[str, ...]
    reason: str | None


def step_data(ds: Dataset) -> StepData:
    status = (
        str(ds.PerformedProcedureStepStatus).strip().upper() if "PerformedProcedureStepStatus" in ds else None
    )
    study = None
    for item in ds.get("ScheduledStepAttributesSequence", []):
        if item.get("StudyInstanceUID"):
            study = str(item.StudyInstanceUID)
            break
    refs: list[str] = []
    for series in ds.get("PerformedSeriesSequence", []):
        for seq in ("ReferencedImageSequence", "ReferencedNonImageCompositeSOPInstanceSequence"):
            refs += [
                str(i.ReferencedSOPInstanceUID)
                for i in series.get(seq, [])
                if "ReferencedSOPInstanceUID" in i
            ]
    reason = None
    for code in ds.get("PerformedProcedureStepDiscontinuationReasonCodeSequence", []):
        reason = str(code.get("CodeMeaning") or code.get("CodeValue") or "") or None
    if reason is None and ds.get("CommentsOnThePerformedProcedureStep"):
        reason = str(ds.CommentsOnThePerformedProcedureStep)
    return StepData(status, study, tuple(dict.fromkeys(refs)), reason)


class MppsScp:
    """N-CREATE / N-SET handlers bound to the index."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def on_n_create(self, event: evt.Event) -> tuple[int, Dataset | None]:
        request: Any = event.request
        if str(request.AffectedSOPClassUID) != SOP_CLASS:
            return 0x0122, None
        uid = str(request.AffectedSOPInstanceUID or "")
        if not uid:
            return INVALID_VALUE, None  # the SCU must propose the instance UID (PS3.4 F.7.2.1.1)
        try:
            data = step_data(event.attribute_list)
        except Exception as exc:
            log.warning("MPPS N-CREATE unreadable: %s", exc)
            return PROCESSING_FAILURE, None
        if data.status != IN_PROGRESS:
            return INVALID_VALUE, None
        now = utcnow()
        try:
            with self.sessions.begin() as session:
                session.add(
                    Mpps(
                        sop_instance_uid=uid,
                        study_instance_uid=data.study_instance_uid,
                        status=IN_PROGRESS,
                        referenced=list(data.referenced),
                        calling_ae=str(event.assoc.requestor.ae_title).strip()[:16],
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            return DUPLICATE_INSTANCE, None
        log.info("MPPS in progress", extra={"mpps": uid, "study": data.study_instance_uid})
        return SUCCESS, event.attribute_list

    def on_n_set(self, event: evt.Event) -> tuple[int, Dataset | None]:
        request: Any = event.request
        if str(request.RequestedSOPClassUID) != SOP_CLASS:
            return 0x0122, None
        uid = str(request.RequestedSOPInstanceUID)
        try:
            data = step_data(event.modification_list)
        except Exception as exc:
            log.warning("MPPS N-SET unreadable: %s", exc)
            return PROCESSING_FAILURE, None
        if data.status is not None and data.status not in (IN_PROGRESS, *FINAL):
            return INVALID_VALUE, None
        with self.sessions.begin() as session:
            row = session.query(Mpps).filter_by(sop_instance_uid=uid).with_for_update().one_or_none()
            if row is None:
                return NO_SUCH_INSTANCE, None
            if row.status in FINAL:
                return MAY_NO_LONGER_BE_UPDATED, None
            if data.status is not None:
                row.status = data.status
            if data.referenced:
                row.referenced = list(data.referenced)
            if data.study_instance_uid:
                row.study_instance_uid = data.study_instance_uid
            if data.reason:
                row.reason = data.reason[:2000]
            row.updated_at = utcnow()
            status, study = row.status, row.study_instance_uid
        log.info("MPPS updated", extra={"mpps": uid, "status": status, "study": study})
        return SUCCESS, event.modification_list
