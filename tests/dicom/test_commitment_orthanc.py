"""Storage Commitment that always answers, with Orthanc (Debian) as the requesting PACS.

Orthanc releases the association right after the N-ACTION response and waits for the N-EVENT-REPORT on its
own DICOM port. With that port configured it gets "Success", also when the gateway died between the N-ACTION
response and the report (the outbox row's lease expires and the delivery worker sends it). With default
settings (no peer configured) every request, the first included, is refused at the N-ACTION, which Orthanc
reports as a failure: never "Pending".
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from gateway.delivery import build_senders
from gateway.delivery.worker import DeliveryWorker
from gateway.dicom.commitment import KIND, CommitmentResponder
from gateway.dicom.scp import Scp
from gateway.index.db import open_index
from gateway.index.models import Outbox
from gateway.metrics import Metrics
from gateway.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from harness import find_free_port

pytestmark = pytest.mark.dcmtk


@pytest.fixture
def orthanc_and_gateway(
    tmp_path: Path, sqlite_index_url: str, make_instance: Callable[..., Any]
) -> Iterator[Callable[[bool], tuple[str, str]]]:
    orthanc = shutil.which("Orthanc")
    if orthanc is None:
        pytest.fail("Orthanc is not installed (scripts/system-deps.sh installs it)")
    started: list[Any] = []

    def start(configure_port: bool) -> tuple[str, str]:
        return start_with(configure_port)[:2]

    def start_with(configure_port: bool) -> tuple[str, str, Scp]:
        http_port, dicom_port, gw_port = find_free_port(), find_free_port(), find_free_port()
        peers = (
            [{"ae_title": "ORTHANC", "hosts": ["127.0.0.1"], "port": dicom_port}] if configure_port else []
        )
        settings = Settings.load(
            None,
            data_dir=tmp_path / "data",
            database_url=sqlite_index_url,
            dicom_port=gw_port,
            dicom={"bind": "127.0.0.1", "min_free_bytes": 0, "peers": peers},
        )
        scp = Scp(settings, open_index(sqlite_index_url), Metrics())
        scp.start()
        started.append(scp)
        config = {
            "StorageDirectory": str(tmp_path / "storage"),
            "IndexDirectory": str(tmp_path / "index"),
            "DicomAet": "ORTHANC",
            "DicomPort": dicom_port,
            "HttpPort": http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomModalities": {"gw": ["GATEWAY", "127.0.0.1", gw_port]},
            "Plugins": [],
        }
        (tmp_path / "orthanc.json").write_text(json.dumps(config))
        proc = subprocess.Popen(
            [orthanc, str(tmp_path / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        started.append(proc)
        base = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/system", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "Orthanc did not start"
                time.sleep(0.2)
        make_instance("ct", path=tmp_path / "ct.dcm")
        instance = httpx.post(f"{base}/instances", content=(tmp_path / "ct.dcm").read_bytes()).json()["ID"]
        return base, instance, scp

    start.full = start_with  # type: ignore[attr-defined]
    yield start
    for item in started:
        if isinstance(item, Scp):
            item.stop(timeout=5)
            item.ae.shutdown()
        else:
            item.terminate()
            item.wait(10)


def _store_with_commitment(base: str, instance: str) -> httpx.Response:
    return httpx.post(
        f"{base}/modalities/gw/store",
        json={"Resources": [instance], "StorageCommitment": True, "Synchronous": True},
        timeout=60,
    )


def _report(base: str, transaction: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        status = httpx.get(f"{base}/storage-commitment/{transaction}").json()["Status"]
        if status != "Pending":
            return str(status)
        time.sleep(0.2)
    return str(status)


def test_configured_port_gets_success(orthanc_and_gateway: Callable[[bool], tuple[str, str]]) -> None:
    base, instance = orthanc_and_gateway(True)
    response = _store_with_commitment(base, instance)
    response.raise_for_status()
    assert _report(base, response.json()["StorageCommitmentTransactionUID"]) == "Success"


def _job(base: str, job: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info: dict[str, Any] = httpx.get(f"{base}/jobs/{job}").json()
        if info["State"] in ("Success", "Failure") or time.monotonic() > deadline:
            return info
        time.sleep(0.2)


def test_default_settings_every_request_is_told(
    orthanc_and_gateway: Callable[[bool], tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """No peer configured: nothing can carry the report back to Orthanc, so the very first N-ACTION is
    refused, and Orthanc's store job ends in a failure naming storage commitment, never Pending."""
    base, instance = orthanc_and_gateway(False)
    for _ in range(2):
        job = httpx.post(
            f"{base}/modalities/gw/store",
            json={"Resources": [instance], "StorageCommitment": True, "Asynchronous": True},
            timeout=60,
        ).json()["ID"]
        info = _job(base, job)
        assert info["State"] == "Failure", info
        assert "storage commitment" in json.dumps(info).lower()
    tags = httpx.get(f"{base}/instances/{instance}/simplified-tags").json()
    direct = httpx.post(
        f"{base}/modalities/gw/storage-commitment",
        json={
            "DicomInstances": [{"SOPClassUID": tags["SOPClassUID"], "SOPInstanceUID": tags["SOPInstanceUID"]}]
        },
        timeout=60,
    )
    assert direct.status_code >= 400
    assert "Storage commitment" in direct.json()["Details"]
    refused = [
        r.getMessage() for r in caplog.records if "storage commitment request refused" in r.getMessage()
    ]
    assert len(refused) == 3
    assert all("dicom.peers[].port for ORTHANC" in m for m in refused)


def test_report_survives_a_crash_after_the_n_action_response(
    orthanc_and_gateway: Any, monkeypatch: pytest.MonkeyPatch, sqlite_index_url: str
) -> None:
    """The gateway answers the N-ACTION and dies before reporting: the outbox row it leased expires and the
    delivery worker of the restarted gateway reports on a new association; Orthanc ends with Success."""
    monkeypatch.setattr(CommitmentResponder, "reply", lambda self, assoc, claimed: None)  # dies here
    base, instance, scp = orthanc_and_gateway.full(True)
    response = _store_with_commitment(base, instance)
    response.raise_for_status()
    transaction = response.json()["StorageCommitmentTransactionUID"]
    assert _report(base, transaction, timeout=2) == "Pending"
    sessions = open_index(sqlite_index_url)
    with sessions.begin() as session:
        [row] = session.scalars(select(Outbox).where(Outbox.kind == KIND)).all()
        assert (row.state, row.destination, row.payload["transaction_uid"]) == (
            "sending",
            "ORTHANC",
            transaction,
        )
        session.execute(
            update(Outbox).values(lease_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    settings = scp.settings
    worker = DeliveryWorker(
        settings.delivery,
        sessions,
        build_senders(settings.delivery, sessions, settings.ae_title, settings.dicom),
        owner="restarted",
    )
    assert worker.run_once()
    assert _report(base, transaction) == "Success"
    with sessions() as session:
        [row] = session.scalars(select(Outbox).where(Outbox.kind == KIND)).all()
        assert (row.state, row.attempts) == ("sent", 2)
