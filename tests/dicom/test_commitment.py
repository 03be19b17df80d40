"""Storage Commitment routes: refused when no way back is known, recorded in the outbox when accepted.

pynetdicom SCUs over real associations against ``gateway.dicom.scp.Scp``; Orthanc as the requester is in
``test_commitment_orthanc.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicom.commitment import KIND, SOP_CLASS, SOP_INSTANCE, refusal_comment
from gateway.index.models import Outbox

CT = "1.2.840.10008.5.1.4.1.1.2"


def _request(ds: Dataset) -> Dataset:
    request = Dataset()
    request.TransactionUID = generate_uid()
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    request.ReferencedSOPSequence = Sequence([item])
    return request


def _sessions(scp: Any) -> sessionmaker[Session]:
    sessions: sessionmaker[Session] = scp.responder._sessions
    return sessions


def _commitment_rows(scp: Any) -> list[Outbox]:
    with _sessions(scp)() as session:
        return list(session.scalars(select(Outbox).where(Outbox.kind == KIND)))


@pytest.fixture
def scu() -> Any:
    aes: list[AE] = []

    def associate(port: int, calling: str = "TEST-SCU") -> Any:
        ae = AE(ae_title=calling)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        ae.add_requested_context(CT, ExplicitVRLittleEndian)
        ae.add_requested_context(SOP_CLASS, ExplicitVRLittleEndian)
        aes.append(ae)
        return ae.associate("127.0.0.1", port, ae_title="GATEWAY")

    yield associate
    for ae in aes:
        ae.shutdown()


def test_refusal_comment_fits_lo() -> None:
    assert len(refusal_comment("A" * 16)) <= 64
    assert "dicom.peers[].port" in refusal_comment("ORTHANC")


def test_no_way_back_refuses_the_n_action(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset], scu: Any
) -> None:
    """Default settings: the requester is unknown, so neither a port nor a waiting association is known."""
    scp = start_scp()
    stored = make_instance("ct")
    assoc = scu(scp.port)
    assert int(assoc.send_c_store(stored).Status) == 0
    status, _ = assoc.send_n_action(_request(stored), 1, SOP_CLASS, SOP_INSTANCE)
    assoc.release()
    assert status.Status == 0x0110
    assert status.ErrorComment == refusal_comment("TEST-SCU")
    assert _commitment_rows(scp) == []


def test_declared_waiting_peer_that_releases_is_dead_lettered_with_the_reason(
    start_scp: Callable[..., Any],
    make_instance: Callable[..., Dataset],
    scu: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer declared to wait that releases anyway: the report cannot go, and the outbox says why."""
    scp = start_scp(dicom={"peers": [{"ae_title": "TEST-SCU", "waits_for_commitment": True}]})
    stored = make_instance("ct")
    assoc = scu(scp.port)
    assert int(assoc.send_c_store(stored).Status) == 0
    request = _request(stored)
    status, _ = assoc.send_n_action(request, 1, SOP_CLASS, SOP_INSTANCE)
    assert status.Status == 0
    assoc.release()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = _commitment_rows(scp)
        if rows and rows[0].state != "sending":
            break
        time.sleep(0.05)
    [row] = _commitment_rows(scp)
    assert row.state == "dead"
    assert row.destination == "TEST-SCU"
    assert row.payload["transaction_uid"] == request.TransactionUID
    assert "no port is configured" in (row.last_error or "")
    assert any(r.levelname == "ERROR" and "not delivered (dead)" in r.getMessage() for r in caplog.records)


def test_report_on_the_association_is_recorded_as_sent(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]
) -> None:
    scp = start_scp(dicom={"peers": [{"ae_title": "TEST-SCU", "waits_for_commitment": True}]})
    stored = make_instance("ct")
    got = threading.Event()

    def on_report(event: Any) -> tuple[int, None]:
        got.set()
        return 0, None

    from pynetdicom import evt

    ae = AE(ae_title="TEST-SCU")
    ae.add_requested_context(CT, ExplicitVRLittleEndian)
    ae.add_requested_context(SOP_CLASS, ExplicitVRLittleEndian)
    try:
        assoc = ae.associate(
            "127.0.0.1", scp.port, ae_title="GATEWAY", evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)]
        )
        assert int(assoc.send_c_store(stored).Status) == 0
        status, _ = assoc.send_n_action(_request(stored), 1, SOP_CLASS, SOP_INSTANCE)
        assert status.Status == 0
        assert got.wait(10)
        deadline = time.monotonic() + 5
        while _commitment_rows(scp)[0].state == "sending" and time.monotonic() < deadline:
            time.sleep(0.05)
        assoc.release()
    finally:
        ae.shutdown()
    [row] = _commitment_rows(scp)
    assert (row.state, row.attempts) == ("sent", 1)
