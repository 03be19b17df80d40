"""A real PACS (Orthanc, from Debian) configured with the gateway as a modality pushes a study to it."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from harness import find_free_port, load_sample_module

pytestmark = pytest.mark.dcmtk


def test_orthanc_pushes_a_study_to_the_gateway(start_scp, sessions, tmp_path: Path) -> None:
    orthanc = shutil.which("Orthanc")
    if orthanc is None:
        pytest.fail("Orthanc is not installed (scripts/system-deps.sh installs it)")
    scp = start_scp()
    http_port, dicom_port = find_free_port(), find_free_port()
    config = {
        "Name": "pacs-under-test",
        "StorageDirectory": str(tmp_path / "storage"),
        "IndexDirectory": str(tmp_path / "index"),
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomModalities": {"gw": [scp.settings.ae_title, "127.0.0.1", scp.port]},
        "Plugins": [],
    }
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    manifest = load_sample_module().build_sample_study(tmp_path / "sample")
    files = sorted((tmp_path / "sample").glob("*.dcm"))
    proc = subprocess.Popen(
        [orthanc, str(tmp_path / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/system", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, "Orthanc did not start"
                time.sleep(0.2)
        study_id = None
        for path in files:
            answer = httpx.post(f"{base}/instances", content=path.read_bytes(), timeout=30).json()
            study_id = answer["ParentStudy"]
        response = httpx.post(f"{base}/modalities/gw/store", content=study_id, timeout=120)
        response.raise_for_status()
        assert response.json()["FailedInstancesCount"] == 0
    finally:
        proc.terminate()
        proc.wait(20)
    from gateway.index.repo import list_studies

    with sessions() as session:
        studies = {s.study_instance_uid: s for s in list_studies(session)}
    assert studies[manifest["study_instance_uid"]].instances == len(files)
