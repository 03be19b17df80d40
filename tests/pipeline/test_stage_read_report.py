"""Stages ``extract`` and ``read_report`` on real Encapsulated PDFs, good and bad.

Bad reports (encrypted, corrupt, not a PDF, nothing but an empty page) end with the study ``failed`` and a
reason an operator can act on; the worker carries on with the next study.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pymupdf
import pytest

from gateway.dicom.ingest import Ingest
from gateway.index.models import Study
from gateway.index.repo import list_studies
from gateway.metrics import Metrics
from gateway.pipeline.stage import Stage
from gateway.pipeline.stages import extract, read_report
from gateway.pipeline.worker import Worker


def _pdf(text: str | None, *, encrypt: bool = False) -> bytes:
    doc = pymupdf.open()
    page = doc.new_page()
    if text:
        page.insert_text((72, 72), text, fontsize=11)
    out = io.BytesIO()
    if encrypt:
        doc.save(out, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o")
    else:
        doc.save(out)
    return out.getvalue()


REPORTS = {
    "good": _pdf("FINDINGS\nA 9 mm nodule in the right upper lobe, see Se 2 Im 5.\nIMPRESSION\nNodule."),
    "encrypted": _pdf("FINDINGS\nSecret.", encrypt=True),
    "corrupt": _pdf("FINDINGS\nCut short.")[:200],
    "not-pdf": b"PK\x03\x04 this is a zip file, not a PDF" + b"\0" * 20,
    "empty-page": _pdf(None),
}


def _push_report(settings, sessions, make_instance, tmp_path: Path, name: str) -> str:  # type: ignore[no-untyped-def]
    ds = make_instance("pdf")
    data = REPORTS[name]
    ds.EncapsulatedDocument = data + (b"\0" if len(data) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(data)
    path = tmp_path / f"{name}.dcm"
    ds.save_as(path, enforce_file_format=True)
    import pydicom

    read = pydicom.dcmread(path)
    Ingest(settings, sessions, Metrics()).store(
        path.read_bytes(), read, transfer_syntax_uid=str(read.file_meta.TransferSyntaxUID), calling_ae="T"
    )
    return str(ds.StudyInstanceUID)


PIPELINE = [
    Stage("extract", extract.run, ""),
    Stage("read_report", read_report.run, ""),
]


@pytest.mark.parametrize("index_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("encrypted", "encrypt"),
        ("corrupt", ""),
        ("not-pdf", "pdf"),
        ("empty-page", "text"),
    ],
)
def test_bad_reports_fail_the_study_with_a_reason(
    settings_factory, sessions, make_instance, tmp_path: Path, name: str, reason: str
) -> None:
    settings = settings_factory(stable_age=0.1)
    study_uid = _push_report(settings, sessions, make_instance, tmp_path, name)
    worker = Worker(settings, sessions, Metrics(), PIPELINE)
    time.sleep(0.15)
    assert worker.run_once()  # extract
    assert worker.run_once()  # read_report: a permanent error, dead-lettered at once
    with sessions() as session:
        (summary,) = [s for s in list_studies(session) if s.study_instance_uid == study_uid]
    assert summary.state == "failed"
    assert summary.state_reason is not None and summary.state_reason.startswith("read_report: ")
    assert reason in summary.state_reason.lower()
    # The worker is alive and takes the next study.
    good_uid = _push_report(settings, sessions, make_instance, tmp_path, "good")
    time.sleep(0.15)
    while worker.run_once():
        pass
    with sessions() as session:
        assert session.query(Study).filter_by(study_instance_uid=good_uid).one().state == "done"


def test_a_good_report_is_read_and_stored(settings_factory, sessions, make_instance, tmp_path: Path) -> None:
    settings = settings_factory(stable_age=0.1)
    study_uid = _push_report(settings, sessions, make_instance, tmp_path, "good")
    worker = Worker(settings, sessions, Metrics(), PIPELINE)
    time.sleep(0.15)
    assert worker.run_once() and worker.run_once()
    from gateway.pipeline.stage import StageContext

    with sessions() as session:
        study = session.query(Study).filter_by(study_instance_uid=study_uid).one()
    assert study.state == "done"
    ctx = StageContext(settings, sessions, study_version=1, stage="read_report")
    (doc,) = ctx.documents(study, stage="read_report", kind="document")
    content = doc.content or {}
    assert content["engine"]["name"]
    assert content["pages"][0]["source"] == "text-layer"
    sections = {p["section"] for p in content["paragraphs"]}
    assert {"findings", "impression"} <= sections
    refs = [r for p in content["paragraphs"] for r in p["figure_refs"]]
    assert any(r["kind"] == "position" and (r["series"], r["instance"]) == (2, 5) for r in refs)
