"""Results back to the PACS: a Basic Text SR, a KOS and the HTML rendition as an Encapsulated PDF, checked
with dciodvfy (dicom3tools) and stored in Orthanc (Debian) with C-STORE from the outbox."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from harness import find_free_port
from test_stage_align import STUDY, put_read_report, seed

from gateway.delivery import build_senders
from gateway.delivery.pacs import build_kos, build_pdf, build_sr, part10
from gateway.delivery.worker import DeliveryWorker
from gateway.fhir.links import Links, resolve
from gateway.fhir.store import SaveSummary
from gateway.index.models import FhirResource, Outbox
from gateway.pipeline.stage import StageContext
from gateway.pipeline.stages import align as align_stage
from gateway.pipeline.stages import publish as publish_stage
from gateway.pipeline.stages.publish import base_url, stored
from gateway.settings import Settings


def _dciodvfy(path: Path) -> list[str]:
    tool = shutil.which("dciodvfy") or str(Path(sys.executable).parent / "dciodvfy")
    out = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def _published(sessions: sessionmaker[Session], tmp_path: Path, settings: Settings) -> list[dict[str, Any]]:
    study = seed(sessions, tmp_path)
    put_read_report(settings, sessions, study, "右肺上叶见结节（Se 2 Im 5）。另见图1。")
    align_stage.run(StageContext(settings, sessions, 1, "align"), study)
    publish_stage.run(StageContext(settings, sessions, 1, "publish"), study)
    with sessions() as session:
        keys = [f"{r.resource_type}/{r.resource_id}" for r in session.scalars(select(FhirResource))]
        # what the outbox carries: stored links made absolute on the public base (as publish does)
        links = Links(base_url(settings))
        return [resolve(r, links) for r in stored(session, SaveSummary(versions=dict.fromkeys(keys, 1)))]


def _walk(items: Any) -> list[Any]:
    out = []
    for item in items:
        out.append(item)
        out += _walk(item.get("ContentSequence", []))
    return out


def test_sr_and_kos_pass_dciodvfy(
    sessions: sessionmaker[Session], tmp_path: Path, settings: Settings
) -> None:
    resources = _published(sessions, tmp_path, settings)
    sr = build_sr(resources, "1")
    kos = build_kos(resources, "1")
    assert kos is not None
    for name, ds in (("sr", sr), ("kos", kos)):
        (tmp_path / f"{name}.dcm").write_bytes(part10(ds))
        assert _dciodvfy(tmp_path / f"{name}.dcm") == [], name
    items = _walk(sr.ContentSequence)
    texts = [i.TextValue for i in items if i.ValueType == "TEXT"]
    assert texts == ["右肺上叶见结节（Se 2 Im 5）。", "另见图1。"]
    assert {i.ConceptNameCodeSequence[0].CodeValue for i in items if i.ValueType == "TEXT"} == {"121071"}
    images = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in items if i.ValueType == "IMAGE"]
    assert images == [f"{STUDY}.2.5", f"{STUDY}.2.3"]
    assert all(i.RelationshipType == "INFERRED FROM" for i in items if i.ValueType == "IMAGE")
    evidence = (
        sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    )
    assert sorted(e.ReferencedSOPInstanceUID for e in evidence) == sorted(images)
    assert sr.CompletionFlag == "COMPLETE" and "PreliminaryFlag" not in sr
    assert [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in kos.ContentSequence] == images
    assert build_sr(resources, "1").SOPInstanceUID == sr.SOPInstanceUID  # stable per report version
    assert build_sr(resources, "2").SOPInstanceUID != sr.SOPInstanceUID


def test_rendition_pdf_passes_dciodvfy_and_carries_the_report_text(
    sessions: sessionmaker[Session], tmp_path: Path, settings: Settings
) -> None:
    import pymupdf

    resources = _published(sessions, tmp_path, settings)
    ds = build_pdf(resources, "1")
    assert ds is not None
    (tmp_path / "pdf.dcm").write_bytes(part10(ds))
    assert _dciodvfy(tmp_path / "pdf.dcm") == []
    pdf = bytes(ds.EncapsulatedDocument)[: ds.EncapsulatedDocumentLength]
    doc = pymupdf.open(stream=pdf, filetype="pdf")
    text = "".join(page.get_text() for page in doc)
    assert "右肺上叶见结节（Se 2 Im 5）。" in text and "另见图1。" in text
    uris = [link.get("uri", "") for link in doc[0].get_links()]
    assert any(u.startswith("http") and f"/instances/{STUDY}.2.5/rendered" in u for u in uris), uris
    assert len(pdf) < 200_000  # the CJK font is subset, not embedded whole
    assert build_pdf(resources, "1").SOPInstanceUID == ds.SOPInstanceUID  # stable per report version
    for res in resources:
        if res["resourceType"] == "DiagnosticReport":
            res.pop("presentedForm", None)
    assert build_pdf(resources, "1") is None


def test_machine_draft_sr_is_preliminary_with_device_observer(
    sessions: sessionmaker[Session], tmp_path: Path, settings: Settings
) -> None:
    resources = _published(sessions, tmp_path, settings)
    for res in resources:
        if res["resourceType"] == "DiagnosticReport":
            res["status"] = "preliminary"
    sr = build_sr(resources, "1")
    (tmp_path / "draft.dcm").write_bytes(part10(sr))
    assert _dciodvfy(tmp_path / "draft.dcm") == []
    assert (sr.PreliminaryFlag, sr.CompletionFlag, sr.VerificationFlag) == (
        "PRELIMINARY",
        "PARTIAL",
        "UNVERIFIED",
    )
    context = [i for i in sr.ContentSequence if i.RelationshipType == "HAS OBS CONTEXT"]
    assert context[0].ConceptCodeSequence[0].CodeValue == "121007"  # observer type: device
    assert any(
        i.ConceptNameCodeSequence[0].CodeValue == "121013" and "rapidocr" in i.TextValue for i in context
    )


@pytest.mark.dcmtk
def test_sr_and_kos_reach_orthanc(
    sessions: sessionmaker[Session], tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    orthanc = shutil.which("Orthanc")
    if orthanc is None:
        pytest.fail("Orthanc is not installed (scripts/system-deps.sh installs it)")
    http_port, dicom_port = find_free_port(), find_free_port()
    config = {
        "StorageDirectory": str(tmp_path / "storage"),
        "IndexDirectory": str(tmp_path / "index"),
        "DicomAet": "ORTHANC",
        "DicomPort": dicom_port,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True,
        "Plugins": [],
    }
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
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
        settings = settings_factory(
            delivery={
                "pacs": [
                    {
                        "name": "pacs",
                        "ae_title": "ORTHANC",
                        "host": "127.0.0.1",
                        "port": dicom_port,
                        "rendition_pdf": True,
                    }
                ]
            }
        )
        study = seed(sessions, tmp_path)
        put_read_report(settings, sessions, study, "右肺上叶见结节（Se 2 Im 5）。另见图1。")
        align_stage.run(StageContext(settings, sessions, 1, "align"), study)
        publish_stage.run(StageContext(settings, sessions, 1, "publish"), study)
        worker = DeliveryWorker(
            settings.delivery, sessions, build_senders(settings.delivery, None, "GATEWAY")
        )
        for _ in range(50):
            if not worker.run_once():
                break
        worker.stop()
        with sessions() as session:
            rows = list(session.scalars(select(Outbox).where(Outbox.kind == "pacs").order_by(Outbox.id)))
        assert [(r.payload["object"], r.state) for r in rows] == [
            ("sr", "sent"),
            ("kos", "sent"),
            ("pdf", "sent"),
        ], [r.last_error for r in rows]
        found = httpx.post(
            f"{base}/tools/find",
            json={"Level": "Instance", "Query": {"StudyInstanceUID": STUDY}, "Expand": True},
        ).json()
        classes = sorted(
            pydicom.dcmread(io.BytesIO(httpx.get(f"{base}/instances/{i['ID']}/file").content)).SOPClassUID
            for i in found
        )
        assert classes == [
            "1.2.840.10008.5.1.4.1.1.104.1",
            "1.2.840.10008.5.1.4.1.1.88.11",
            "1.2.840.10008.5.1.4.1.1.88.59",
        ]
    finally:
        proc.terminate()
        proc.wait(10)
