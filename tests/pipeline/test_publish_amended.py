"""A corrected report re-sent as a new PDF instance: every part of the amended DiagnosticReport (conclusion,
Observations, narrative, HTML rendition, PDF) comes from the newest report document, end to end through
ingest, extract, read_report, align and publish."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path
from typing import Any

import pydicom
import pymupdf
import pytest
from sqlalchemy import select

from gateway.dicom.ingest import Ingest
from gateway.fhir.ids import report_id
from gateway.index.models import FhirResource
from gateway.metrics import Metrics
from gateway.pipeline.stage import Stage
from gateway.pipeline.stages import align, extract, publish, read_report
from gateway.pipeline.worker import Worker

PIPELINE = [
    Stage("extract", extract.run, ""),
    Stage("read_report", read_report.run, ""),
    Stage("align", align.run, ""),
    Stage("publish", publish.run, ""),
]


def _pdf(interval: str, signed: str) -> bytes:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text(
        (72, 72),
        "FINDINGS\nA 9 mm nodule in the right upper lobe.\n"
        f"IMPRESSION\nFollow-up CT in {interval} is recommended.\n"
        f"Reported by: Jane Roe  {signed}",
        fontsize=11,
    )
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def _store(settings: Any, sessions: Any, ds: Any, path: Path) -> None:
    ds.save_as(path, enforce_file_format=True)
    read = pydicom.dcmread(path)
    Ingest(settings, sessions, Metrics()).store(
        path.read_bytes(), read, transfer_syntax_uid=str(read.file_meta.TransferSyntaxUID), calling_ae="T"
    )


def _push_pdf(
    settings: Any, sessions: Any, make_instance: Any, tmp_path: Path, n: int, data: bytes, **uids: Any
) -> Any:
    ds = make_instance("pdf", instance_number=n, **uids)
    ds.EncapsulatedDocument = data + (b"\0" if len(data) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(data)
    ds.TimezoneOffsetFromUTC = "+0800"
    _store(settings, sessions, ds, tmp_path / f"report-{n}.dcm")
    return ds


def _drain(worker: Worker) -> None:
    time.sleep(0.15)
    while worker.run_once():
        pass


def _current(sessions: Any, rtype: str) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = session.scalars(
            select(FhirResource).where(FhirResource.resource_type == rtype, FhirResource.is_current.is_(True))
        )
        return [r.body for r in rows]


@pytest.mark.parametrize("index_url", ["sqlite"], indirect=True)
def test_amended_report_is_one_consistent_document(
    settings_factory: Any, sessions: Any, make_instance: Any, tmp_path: Path
) -> None:
    settings = settings_factory(stable_age=0.1)
    worker = Worker(settings, sessions, Metrics(), PIPELINE)
    first = _push_pdf(settings, sessions, make_instance, tmp_path, 1, _pdf("3 months", "2026-01-10 10:05"))
    study_uid = str(first.StudyInstanceUID)
    _drain(worker)
    [report] = [r for r in _current(sessions, "DiagnosticReport") if r["id"] == report_id(study_uid)]
    assert "3 months" in report["conclusion"] and report["status"] == "final"

    corrected = _pdf("6 weeks", "2026-01-11 09:30")
    second = _push_pdf(
        settings,
        sessions,
        make_instance,
        tmp_path,
        2,
        corrected,
        study_uid=study_uid,
        series_uid=str(first.SeriesInstanceUID),
    )
    _drain(worker)
    [report] = [r for r in _current(sessions, "DiagnosticReport") if r["id"] == report_id(study_uid)]
    assert report["status"] == "amended"
    assert report["issued"] == "2026-01-11T09:30:00+08:00"
    [doctor] = [
        p
        for p in _current(sessions, "Practitioner")
        if p["id"] == report["resultsInterpreter"][0]["reference"].split("/")[1]
    ]
    assert doctor["name"][0]["text"] == "Jane Roe"
    assert "6 weeks" in report["conclusion"] and "3 months" not in report["conclusion"]
    assert "6 weeks" in report["text"]["div"] and "3 months" not in report["text"]["div"]
    html = next(f for f in report["presentedForm"] if f["contentType"] == "text/html")
    page = base64.b64decode(html["data"]).decode("utf-8")
    assert "6 weeks" in page and "3 months" not in page
    pdf_form = next(f for f in report["presentedForm"] if f["contentType"] == "application/pdf")
    binary_id = pdf_form["url"].rsplit("/", 1)[1]
    [binary] = [b for b in _current(sessions, "Binary") if b["id"] == binary_id]
    assert base64.b64decode(binary["data"]) == corrected
    assert {"system": "urn:dicom:uid", "value": f"urn:oid:{second.SOPInstanceUID}"} in report["identifier"]
    results = {r["reference"].split("/")[1] for r in report["result"]}
    texts = [o["valueString"] for o in _current(sessions, "Observation") if o["id"] in results]
    assert any("6 weeks" in t for t in texts) and not any("3 months" in t for t in texts)
    # Identifier systems come from the site table's default when the issuer is not listed.
    [patient] = _current(sessions, "Patient")
    assert patient["identifier"][0]["system"] == settings.fhir.patient_id_system
