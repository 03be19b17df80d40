"""pynetdicom event handlers.

Each handler does one quick thing and gets its dependencies as bound arguments (never globals):

- ``on_requested`` decides whether an association may proceed (calling AE, host, called AE; PS3.8 7.1.1).
- ``on_c_echo`` answers Verification (PS3.4 Annex A).
- ``on_c_store`` stores, indexes and answers (PS3.4 Annex B); the status comes from the error tree.
- ``on_n_action`` accepts a Storage Commitment request (PS3.4 Annex J) and replies with N-EVENT-REPORT
  from a short-lived thread, once our answer to the N-ACTION has gone out.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import cast

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE, N_ACTION
from sqlalchemy.exc import SQLAlchemyError

from gateway.dicom.commitment import CommitmentResponder
from gateway.dicom.ingest import Ingest
from gateway.dicom.part10 import part10
from gateway.dicom.transport import Admission
from gateway.errors import (
    DuplicateRejected,
    IndexError_,
    InvalidInstance,
    OutOfResources,
    StoreError,
    UnsafeUID,
)
from gateway.metrics import Metrics
from gateway.settings import Settings

log = logging.getLogger(__name__)

# C-STORE statuses (PS3.4 Table B.2-1). 0xC0xx values are ours within the "cannot understand" range.
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
INVALID_UID = 0xC001
DUPLICATE_DIFFERENT = 0xC0D1
PROCESSING_FAILURE = 0x0110  # PS3.7 C.4.2: general processing failure
SOP_CLASS_NOT_SUPPORTED = 0x0122  # PS3.7 C.4.2
VERIFICATION = "1.2.840.10008.1.1"

# A-ASSOCIATE-RJ reasons (PS3.8 9.3.4): (result, source, diagnostic)
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
REJECT_CALLED_AE = (0x01, 0x01, 0x07)
REJECT_LOCAL_LIMIT = (0x02, 0x03, 0x02)  # transient, service provider (presentation), local limit exceeded

STORAGE_COMMITMENT_SOP_CLASS = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"


def peer_allowed(settings: Settings, calling_ae: str, address: str) -> tuple[bool, str]:
    """Pure decision on whether ``calling_ae`` from ``address`` may associate; returns (ok, reason)."""
    peers = settings.dicom.peers
    if not peers:
        return True, "no peers configured"
    matching = [p for p in peers if p.ae_title == calling_ae]
    if not matching:
        return False, "unknown calling AE title"
    if not any(p.allows_host(address) for p in matching):
        return False, "calling AE title not allowed from this host"
    return True, "known peer"


def on_requested(
    event: evt.Event, settings: Settings, metrics: Metrics, admission: Admission | None = None
) -> None:
    """Reject unknown callers and a wrong called AE title before any negotiation; then take a slot.

    Only associations that pass these checks take one of ``max_associations`` slots (``admission``);
    connections that have not associated are counted apart, so they cannot crowd out configured peers.
    """
    assoc = event.assoc
    primitive = assoc.requestor.primitive
    assert primitive is not None  # EVT_REQUESTED fires only after the A-ASSOCIATE-RQ arrived
    calling = str(primitive.calling_ae_title).strip()
    called = str(primitive.called_ae_title).strip()
    address = str(assoc.requestor.address)
    if called != settings.ae_title:
        reason, rsd = f"called AE title {called!r} is not ours", REJECT_CALLED_AE
    else:
        ok, why = peer_allowed(settings, calling, address)
        ticket = getattr(assoc, "ticket", None)
        if not ok:
            reason, rsd = why, REJECT_CALLING_AE
        elif admission is not None and ticket is not None and not admission.admit_association(ticket):
            reason, rsd = "all association slots taken", REJECT_LOCAL_LIMIT
        else:
            metrics.associations.labels("accepted").inc()
            return
    metrics.associations.labels("rejected").inc()
    log.warning("association rejected: %s", reason, extra={"calling_ae": calling, "peer": address})
    assoc.acse.send_reject(*rsd)
    assoc.is_rejected = True
    evt.trigger(assoc, evt.EVT_REJECTED, {})
    assoc.kill()


def on_c_echo(event: evt.Event) -> int:
    return SUCCESS


class SopClassNotSupported(InvalidInstance):
    """A C-STORE whose SOP class is not a storage class, or not the one of its presentation context."""


def check_context(settings: Settings, abstract_syntax: str, affected_sop_class: str) -> None:
    """Refuse a C-STORE of Verification, and (by policy) one whose SOP class differs from its context's."""
    if affected_sop_class in (VERIFICATION, STORAGE_COMMITMENT_SOP_CLASS):
        raise SopClassNotSupported(f"{affected_sop_class} is not a storage SOP class")
    if affected_sop_class != abstract_syntax and settings.dicom.context_mismatch == "refuse":
        raise SopClassNotSupported(
            f"SOP class {affected_sop_class} sent on a presentation context for {abstract_syntax}"
        )


def on_c_store(event: evt.Event, ingest: Ingest, metrics: Metrics) -> int | Dataset:
    """Store, index, answer. Success only once the bytes are durable and indexed."""
    request = cast(C_STORE, event.request)
    calling = str(event.assoc.requestor.ae_title).strip()
    received = getattr(request, "_dataset_path", None)  # set when pynetdicom received to a file (chunked)
    reason = ""
    try:
        check_context(ingest.settings, str(event.context.abstract_syntax), str(request.AffectedSOPClassUID))
        if isinstance(received, Path):
            result = ingest.store_received(
                received,
                transfer_syntax_uid=str(event.context.transfer_syntax),
                calling_ae=calling,
                affected_sop_instance_uid=str(request.AffectedSOPInstanceUID),
                affected_sop_class_uid=str(request.AffectedSOPClassUID),
            )
        else:
            raw_size = len(request.DataSet.getvalue()) if request.DataSet is not None else 0
            ingest.check_capacity(raw_size)
            dataset = event.dataset
            assert request.DataSet is not None
            # The data set exactly as received, framed as a Part 10 file (no decode and re-encode).
            encoded = part10(
                request.DataSet.getvalue(),
                str(request.AffectedSOPClassUID),
                str(request.AffectedSOPInstanceUID),
                str(event.context.transfer_syntax),
            )
            result = ingest.store(
                encoded,
                dataset,
                transfer_syntax_uid=str(event.context.transfer_syntax),
                calling_ae=calling,
                affected_sop_instance_uid=str(request.AffectedSOPInstanceUID),
                affected_sop_class_uid=str(request.AffectedSOPClassUID),
            )
    except SopClassNotSupported as exc:
        status, reason = SOP_CLASS_NOT_SUPPORTED, str(exc)
    except OutOfResources as exc:
        status, reason = OUT_OF_RESOURCES, str(exc)
    except UnsafeUID as exc:
        status, reason = INVALID_UID, str(exc)
    except InvalidInstance as exc:
        status, reason = CANNOT_UNDERSTAND, str(exc)
    except DuplicateRejected as exc:
        status, reason = DUPLICATE_DIFFERENT, str(exc)
    except (StoreError, IndexError_) as exc:
        status, reason = PROCESSING_FAILURE, str(exc)
    except SQLAlchemyError as exc:  # the index, never "cannot understand"
        status, reason = PROCESSING_FAILURE, f"index error: {type(exc).__name__}"
    except MemoryError:
        status, reason = OUT_OF_RESOURCES, "out of memory decoding the dataset"
    except Exception as exc:  # a malformed dataset can fail anywhere inside pydicom
        status, reason = CANNOT_UNDERSTAND, f"{type(exc).__name__}: {exc}"
    else:
        log.debug("stored", extra={"sop": result.sop_instance_uid, "outcome": result.outcome})
        return SUCCESS
    metrics.store_failures.labels(f"0x{status:04X}").inc()
    log.warning(
        "C-STORE refused with 0x%04X: %s",
        status,
        reason,
        extra={"calling_ae": calling, "sop": str(request.AffectedSOPInstanceUID)[:64]},
    )
    # C-STORE handlers return a status Dataset, not the (status, dataset) pair of the N-services: pynetdicom
    # answers anything else with 0xC002 and the real status and ErrorComment are lost.
    failure = Dataset()
    failure.Status = status
    failure.ErrorComment = reason[:64]
    return failure


def on_n_action(event: evt.Event, responder: CommitmentResponder) -> tuple[int | Dataset, Dataset | None]:
    """Accept a Storage Commitment request; the N-EVENT-REPORT follows on another thread."""
    request = cast(N_ACTION, event.request)
    if str(request.RequestedSOPClassUID) != STORAGE_COMMITMENT_SOP_CLASS:
        return 0x0122, None  # SOP class not supported
    if str(request.RequestedSOPInstanceUID) != STORAGE_COMMITMENT_INSTANCE:
        return 0x0117, None  # invalid object instance
    if request.ActionTypeID != 1:
        return 0x0123, None  # no such action
    try:
        info = event.action_information
        transaction_uid = str(info.TransactionUID)
        references = [
            (str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID))
            for i in info.ReferencedSOPSequence
        ]
    except Exception as exc:
        log.warning("storage commitment request unreadable: %s", exc)
        return 0x0110, None
    calling = str(event.assoc.requestor.ae_title).strip()
    address = str(event.assoc.requestor.address)
    refused = responder.refusal(calling)
    if refused is not None:  # better a clear failure now than a result that never comes
        log.warning("storage commitment request refused: %s", refused)
        status = Dataset()
        status.Status = PROCESSING_FAILURE
        status.ErrorComment = refused
        return status, None
    try:
        claimed = responder.accept(transaction_uid, references, calling, address)
    except Exception:
        log.exception("storage commitment request could not be recorded")
        status = Dataset()
        status.Status = PROCESSING_FAILURE
        status.ErrorComment = "the request could not be recorded; try again"
        return status, None
    if claimed is None:  # the same transaction is being reported right now
        return SUCCESS, None
    thread = threading.Thread(
        target=responder.reply,
        args=(event.assoc, claimed),
        name=f"commit-{transaction_uid[-8:]}",
        daemon=True,
    )
    thread.start()
    return SUCCESS, None
