"""Every channel at once through a real ``gateway serve``:

an order comes in over MLLP (python-hl7 client); Orthanc pushes the sample study; the modality's MPPS
(pynetdicom) completes it long before the quiet timer (600 s); the report then goes out as an ORU^R01 to an
MLLP peer (python-hl7, answers AA), as a transaction Bundle to a schema-checking receiver, as a Subscription
notification to a rest-hook endpoint, and as an SR and a KOS into Orthanc, where both pass dciodvfy.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hl7
import hl7.mllp
import httpx
import pydicom
import pytest
from fhir_receiver import FhirReceiver
from hl7_peer import Hl7Peer, check_oru
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from test_pacs import _dciodvfy
from test_subscriptions import Endpoint, _subscription

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from harness import find_free_port, load_sample_module

from gateway.dicom.mpps import SOP_CLASS as MPPS
from gateway.index.db import open_index
from gateway.index.repo import list_studies

pytestmark = [pytest.mark.slow, pytest.mark.dcmtk]
TOKEN = "e2e-delivery-token"


def _wait(what: str, check: Any, timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; gateway log:\n{log.read_text()[-4000:]}")


def _mpps(port: int, study_uid: str, sop_uids: list[str]) -> None:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(MPPS, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="GATEWAY")
    assert assoc.is_established
    uid = generate_uid()
    create = Dataset()
    create.PerformedProcedureStepStatus = "IN PROGRESS"
    sched = Dataset()
    sched.StudyInstanceUID = study_uid
    create.ScheduledStepAttributesSequence = Sequence([sched])
    assert assoc.send_n_create(create, MPPS, uid)[0].Status == 0
    done = Dataset()
    done.PerformedProcedureStepStatus = "COMPLETED"
    series = Dataset()
    series.SeriesInstanceUID = generate_uid()
    refs = []
    for sop in sop_uids:
        ref = Dataset()
        ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ref.ReferencedSOPInstanceUID = sop
        refs.append(ref)
    series.ReferencedImageSequence = Sequence(refs)
    done.PerformedSeriesSequence = Sequence([series])
    assert assoc.send_n_set(done, MPPS, uid)[0].Status == 0
    assoc.release()


def _order(port: int, manifest: dict[str, Any]) -> str:
    obr = ["OBR", "1", "PL-E2E", "FI-E2E", "CTCHEST^CT chest^L"] + [""] * 20
    obr[18], obr[24] = manifest["accession_number"], "CT"
    message = "\r".join(
        [
            "MSH|^~\\&|RIS|HOSP|GATEWAY|RAD|20261201040000||ORM^O01|ORD1|P|2.3.1",
            f"PID|1||{manifest['patient_id']}||Invented^Person",
            "ORC|NW|PL-E2E|FI-E2E",
            "|".join(obr),
            f"ZDS|{manifest['study_instance_uid']}^100^Application^DICOM",
        ]
    )

    async def send() -> str:
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, encoding="utf-8")
        writer.writemessage(hl7.parse(message))
        await writer.drain()
        ack = await asyncio.wait_for(reader.readmessage(), 10)
        writer.close()
        return str(ack.segment("MSA")(1))

    return asyncio.run(send())


def test_all_channels(tmp_path: Path) -> None:
    orthanc = shutil.which("Orthanc")
    if orthanc is None or shutil.which("echoscu") is None:
        pytest.fail("Orthanc and DCMTK are needed (scripts/system-deps.sh installs them)")
    manifest = load_sample_module().build_sample_study(tmp_path / "sample")
    # Without the SR report the study can only complete by MPPS (or the 600 s timer).
    files = [p for p in sorted((tmp_path / "sample").glob("*.dcm")) if p.name != manifest["report"]["sr"]]
    sop_uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files]

    peer = Hl7Peer().start()
    received_oru: list[Any] = []
    peer.answer = lambda item: (check_oru(item), received_oru.append(item), ("AA", ""))[2]
    receiver = FhirReceiver().start()
    endpoint = Endpoint()
    o_http, o_dicom, gw_dicom, gw_http, orders = (find_free_port() for _ in range(5))
    (tmp_path / "orthanc.json").write_text(
        json.dumps(
            {
                "StorageDirectory": str(tmp_path / "o-storage"),
                "IndexDirectory": str(tmp_path / "o-index"),
                "DicomAet": "ORTHANC",
                "DicomPort": o_dicom,
                "HttpPort": o_http,
                "RemoteAccessAllowed": False,
                "AuthenticationEnabled": False,
                "DicomModalities": {"gw": ["GATEWAY", "127.0.0.1", gw_dicom]},
                "Plugins": [],
            }
        )
    )
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[dicom]
bind = "127.0.0.1"
min_free_bytes = 0

[delivery]
backoff_base = 0.2
backoff_max = 1.0
poll_interval = 0.1

[delivery.orders]
enabled = true
port = {orders}

[[delivery.hl7]]
name = "emr"
host = "127.0.0.1"
port = {peer.port}
include_pdf = true

[[delivery.fhir]]
name = "imr"
base_url = "{receiver.base}"

[[delivery.pacs]]
name = "pacs"
ae_title = "ORTHANC"
host = "127.0.0.1"
port = {o_dicom}
"""
    )
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(config),
            "--data-dir",
            str(tmp_path / "data"),
            "--dicom-port",
            str(gw_dicom),
            "--http-port",
            str(gw_http),
            "--stable-age",
            "600",
            "--api-token",
            TOKEN,
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    pacs = subprocess.Popen(
        [orthanc, str(tmp_path / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{o_http}"
    try:

        def up() -> bool:
            try:
                httpx.get(f"{base}/system", timeout=1).raise_for_status()
                httpx.get(f"http://127.0.0.1:{gw_http}/healthz", timeout=1).raise_for_status()
                return True
            except httpx.HTTPError:
                assert gateway.poll() is None, log.read_text()
                return False

        _wait("gateway and Orthanc", up, 60, log)
        assert _wait("order ACK", lambda: _order(orders, manifest), 20, log) == "AA"
        made = httpx.post(
            f"http://127.0.0.1:{gw_http}/fhir/Subscription",
            json=_subscription(endpoint.url),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert made.status_code == 201, made.text

        _mpps(gw_dicom, manifest["study_instance_uid"], sop_uids)
        ids = [
            httpx.post(f"{base}/instances", content=p.read_bytes(), timeout=30).json()["ID"] for p in files
        ]
        pushed = httpx.post(
            f"{base}/modalities/gw/store", json={"Resources": ids, "Synchronous": True}, timeout=300
        )
        assert pushed.json()["FailedInstancesCount"] == 0

        sessions = open_index(f"sqlite:///{tmp_path / 'data' / 'index.sqlite3'}")

        def study() -> dict[str, Any] | None:
            with sessions() as session:
                rows = [s.as_json() for s in list_studies(session)]
            found = next((s for s in rows if s["study_instance_uid"] == manifest["study_instance_uid"]), None)
            return found if found and found["state"] in ("done", "failed") else None

        final = _wait("the pipeline", study, 300, log)
        assert final["state"] == "done", final
        listing = subprocess.run(
            [sys.executable, "-m", "gateway", "studies", "--json", "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        ).stdout

        _wait("the ORU", lambda: received_oru, 60, log)
        oru = received_oru[0].parsed
        assert str(oru.segment("OBR")(2)) == "PL-E2E" and str(oru.segment("OBR")(3)) == "FI-E2E"
        assert any(str(s(2)) == "RP" for s in oru if str(s[0]) == "OBX")
        _wait("the transaction", lambda: receiver.identifiers, 60, log)
        assert receiver.rejected == []
        _wait(
            "the notification",
            lambda: [
                b
                for b, _ in endpoint.received
                if any(
                    p.get("valueCode") == "event-notification" for p in b["entry"][0]["resource"]["parameter"]
                )
            ],
            60,
            log,
        )

        def stored_back() -> list[str]:
            found = httpx.post(
                f"{base}/tools/find",
                json={
                    "Level": "Instance",
                    "Query": {"StudyInstanceUID": manifest["study_instance_uid"], "Modality": "SR\\\\KO"},
                },
            ).json()
            return [] if len(found) < 2 else found

        back = _wait("SR and KOS in Orthanc", stored_back, 60, log)
        for n, instance in enumerate(back):
            path = tmp_path / f"back-{n}.dcm"
            path.write_bytes(httpx.get(f"{base}/instances/{instance}/file").content)
            assert _dciodvfy(path) == [], path
        [shown] = json.loads(listing)
        print(f"\nstudy became stable: {shown['stable_reason']!r}")
        assert str(shown["stable_reason"]).startswith("MPPS COMPLETED"), shown
    finally:
        gateway.terminate()
        gateway.wait(60)
        pacs.terminate()
        pacs.wait(20)
        peer.stop()
        receiver.stop()
        endpoint.stop()
