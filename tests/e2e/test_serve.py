"""``gateway serve`` end to end: storescu pushes the sample study; the study goes stable, then done."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import generate_uid


def test_sample_study_is_received_processed_and_done(served) -> None:
    files = sorted(served.sample_dir.glob("*.dcm"))
    served.storescu(*files)
    seen = served.wait_state({"done", "failed"})
    study = served.study()
    assert study["state"] == "done", (seen, study, served.log.read_text()[-3000:])
    assert seen[0] in ("receiving", "stable", "processing")
    assert study["instances"] == len(files)
    assert study["patient_id"] == "DEMO-0001" and study["accession_number"] == "DEMOACC0001"
    assert study["documents"] >= 1 and study["version"] == 1
    assert "stable" in seen or "processing" in seen
    listed = json.loads(served.gateway("studies", "--json"))
    assert {
        "study_instance_uid",
        "patient_id",
        "accession_number",
        "state",
        "instances",
        "documents",
        "updated_at",
    } <= set(listed[0])
    jobs = json.loads(served.gateway("jobs", "--json"))
    assert {j["state"] for j in jobs} == {"done"}
    assert [j["stage"] for j in sorted(jobs, key=lambda j: j["id"])][:3] == [
        "extract",
        "read_report",
        "draft_findings",
    ]
    # Health answers without a token; metrics need it.
    assert httpx.get(f"{served.base}/healthz").status_code == 200
    assert httpx.get(f"{served.base}/metrics").status_code == 401
    metrics = httpx.get(f"{served.base}/metrics", headers={"Authorization": f"Bearer {served.token}"}).text
    assert f"gateway_instances_received_total {float(len(files))}" in metrics


def test_no_patient_identifiers_in_info_logs(served) -> None:
    text = served.log.read_text()
    assert "stage done" in text
    assert "DEMO-0001" not in text and "Demo^Patient" not in text


def test_late_instance_reopens_study_and_runs_a_new_version(served, tmp_path: Path) -> None:
    served.wait_state({"done"})
    first = sorted(served.sample_dir.glob("CT_*.dcm"))[0]
    late = pydicom.dcmread(first)
    late.SOPInstanceUID = generate_uid()
    late.file_meta.MediaStorageSOPInstanceUID = late.SOPInstanceUID
    late.InstanceNumber = 99
    path = tmp_path / "late.dcm"
    late.save_as(path)
    served.storescu(path)
    seen = served.wait_state({"done"}, timeout=120)
    assert seen[0] == "receiving"  # reopened by the late instance
    study = served.study()
    assert study["version"] == 2
    assert study["documents"] == 2  # the PDF and the SR of this version, not of both versions
    jobs = json.loads(served.gateway("jobs", "--json"))
    per_version = {(j["stage"], j["version"]) for j in jobs}
    assert ("extract", 1) in per_version and ("extract", 2) in per_version
    assert len(jobs) == len(per_version)  # one job per stage and version: a new version, not a copy


def test_sigterm_stops_gracefully(served) -> None:
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(45) == 0
    text = served.log.read_text()
    assert "DICOM SCP stopped" in text
    # Everything acknowledged is still indexed after the restart-free shutdown.
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "studies", "--json", "--data-dir", str(served.data_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)[0]["instances"] == len(list(served.sample_dir.glob("*.dcm"))) + 1
