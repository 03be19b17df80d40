"""Storage Commitment that always answers, with Orthanc (Debian) as the requesting PACS.

Orthanc releases the association right after the N-ACTION response and waits for the N-EVENT-REPORT on its
own DICOM port. With that port configured it gets "Success"; without it, the first result is lost (logged
with the fix) and every later request is refused at the N-ACTION, which Orthanc reports as a failure
instead of "Pending" forever.
"""

from __future__ import annotations

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

from gateway.dicom.scp import Scp
from gateway.index.db import open_index
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
        return base, instance

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


def test_without_port_the_pacs_is_told(
    orthanc_and_gateway: Callable[[bool], tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    base, instance = orthanc_and_gateway(False)
    first = _store_with_commitment(base, instance)
    first.raise_for_status()
    assert _report(base, first.json()["StorageCommitmentTransactionUID"], timeout=3) == "Pending"
    assert any("set dicom.peers[].port for AE ORTHANC" in r.getMessage() for r in caplog.records)
    second = _store_with_commitment(base, instance)
    assert second.status_code == 500
    assert "Storage commitment" in second.json()["Details"]
