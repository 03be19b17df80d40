"""STOW-RS (PS3.18 10.5): each part of the request goes through the same :meth:`Ingest.store` as C-STORE.

So the promise is the same: an instance is reported stored only after its file is fsynced and its index
rows are committed; validation and the duplicate policy are the same code. The response lists every
instance, stored or failed with a reason (PS3.18 Table 10.5.3-1 ReferencedSOPSequence / FailedSOPSequence).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

from pydicom import dcmread

from gateway.dicom.ingest import Ingest
from gateway.errors import DuplicateRejected, IndexError_, InvalidInstance, OutOfResources, StoreError

log = logging.getLogger(__name__)

# FailureReason values (PS3.18 Table 10.5.3-2 / PS3.4 Annex GG).
PROCESSING_FAILURE = 0x0110
DUPLICATE = 0x0111
OUT_OF_RESOURCES = 0xA700
STUDY_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True)
class StowOutcome:
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    failure: int | None
    reason: str
    outcome: str = ""


def store_part(ingest: Ingest, data: bytes, study_uid: str | None) -> StowOutcome:
    """Keep one application/dicom part; never raises for bad input, the outcome says why it failed."""
    sop_class = sop = study = series = ""
    try:
        ds = dcmread(io.BytesIO(data))
        sop_class = str(ds.get("SOPClassUID", ""))
        sop = str(ds.get("SOPInstanceUID", ""))
        study = str(ds.get("StudyInstanceUID", ""))
        series = str(ds.get("SeriesInstanceUID", ""))
        meta = getattr(ds, "file_meta", None)
        syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
        if not syntax:
            raise InvalidInstance("part is not a Part-10 file (no Transfer Syntax UID in its meta header)")
        if study_uid is not None and study != study_uid:
            return StowOutcome(
                sop_class, sop, study, series, STUDY_MISMATCH, "StudyInstanceUID differs from the URL"
            )
        result = ingest.store(data, ds, transfer_syntax_uid=syntax, calling_ae=None)
    except OutOfResources as exc:
        failure, reason = OUT_OF_RESOURCES, str(exc)
    except DuplicateRejected as exc:
        failure, reason = DUPLICATE, str(exc)
    except InvalidInstance as exc:
        failure, reason = CANNOT_UNDERSTAND, str(exc)
    except (StoreError, IndexError_) as exc:
        failure, reason = PROCESSING_FAILURE, str(exc)
    except Exception as exc:  # a malformed dataset can fail anywhere inside pydicom
        failure, reason = CANNOT_UNDERSTAND, f"{type(exc).__name__}: {exc}"
    else:
        return StowOutcome(sop_class, sop, study, series, None, "", result.outcome)
    log.warning("STOW-RS instance refused with 0x%04X: %s", failure, reason, extra={"sop": sop[:64]})
    return StowOutcome(sop_class, sop, study, series, failure, reason)


def response_body(outcomes: list[StowOutcome], retrieve_url: Any) -> tuple[int, dict[str, Any]]:
    """HTTP status (200 all stored, 202 some, 409 none) and the DICOM JSON response."""
    stored = [o for o in outcomes if o.failure is None]
    failed = [o for o in outcomes if o.failure is not None]
    body: dict[str, Any] = {}
    if stored:
        body["00081199"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [o.sop_class_uid]},
                    "00081155": {"vr": "UI", "Value": [o.sop_instance_uid]},
                    "00081190": {
                        "vr": "UR",
                        "Value": [
                            retrieve_url(o.study_instance_uid, o.series_instance_uid, o.sop_instance_uid)
                        ],
                    },
                }
                for o in stored
            ],
        }
    if failed:
        body["00081198"] = {
            "vr": "SQ",
            "Value": [
                {
                    **({"00081150": {"vr": "UI", "Value": [o.sop_class_uid]}} if o.sop_class_uid else {}),
                    **(
                        {"00081155": {"vr": "UI", "Value": [o.sop_instance_uid]}}
                        if o.sop_instance_uid
                        else {}
                    ),
                    "00081197": {"vr": "US", "Value": [o.failure]},
                }
                for o in failed
            ],
        }
    studies = {o.study_instance_uid for o in stored}
    if len(studies) == 1:
        body["00081190"] = {"vr": "UR", "Value": [retrieve_url(next(iter(studies)))]}
    status = 200 if not failed else (202 if stored else 409)
    return status, body
