"""Completion on a PDF report: the positions its text layer names ("Se 2 Im 7") must all have arrived.

pynetdicom as the modality and the report sender, against ``gateway.dicom.scp.Scp``; the PDFs are written
with PyMuPDF, so the text layer is a real one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pymupdf
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicom.completion import Completion, pdf_position_references, position_references
from gateway.index.models import Study

CT = "1.2.840.10008.5.1.4.1.1.2"
PDF = "1.2.840.10008.5.1.4.1.1.104.1"


def _pdf(*lines: str) -> bytes:
    doc = pymupdf.open()
    page = doc.new_page()
    for k, line in enumerate(lines):
        page.insert_text((72, 72 + 18 * k), line, fontsize=11)
    data: bytes = doc.tobytes()
    doc.close()
    return data


def _report(make_instance: Callable[..., Dataset], study_uid: str, pdf: bytes) -> Dataset:
    ds = make_instance("pdf", study_uid=study_uid)
    ds.EncapsulatedDocument = pdf if len(pdf) % 2 == 0 else pdf + b"\x00"
    return ds


def _image(
    make_instance: Callable[..., Dataset], study_uid: str, series_uid: str, series: int, number: int
) -> Dataset:
    ds = make_instance("ct", study_uid=study_uid, series_uid=series_uid, instance_number=number)
    ds.SeriesNumber = series
    return ds


def _assoc(port: int) -> Any:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CT, ExplicitVRLittleEndian)
    ae.add_requested_context(PDF, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="GATEWAY")
    assert assoc.is_established
    return assoc


def _study(sessions: sessionmaker[Session], uid: str) -> Study:
    with sessions() as session:
        return session.scalars(select(Study).where(Study.study_instance_uid == uid)).one()


def test_position_references_are_explicit_positions_only() -> None:
    text = "Nodule (Se 2 Im 7); see also series 2, image 9. Compare Figure 3. 序列3 第45幅"
    assert position_references(text) == {"se2/im7", "se2/im9", "se3/im45"}
    assert position_references("See Figure 2 and Fig. 3") == frozenset()


def test_pdf_text_layer_is_read_and_a_scan_names_nothing() -> None:
    assert pdf_position_references(_pdf("Findings: 6 mm nodule, Se 4 Im 112.")) == {"se4/im112"}
    doc = pymupdf.open()
    doc.new_page()  # no text layer: what a scanned report looks like without OCR
    assert pdf_position_references(doc.tobytes()) == frozenset()
    assert pdf_position_references(b"%PDF-1.4 broken") == frozenset()


def test_pdf_report_completes_the_study_when_its_referenced_images_arrive_last(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]
) -> None:
    scp = start_scp(stable_age=3600)
    sessions = scp.mpps.sessions
    study_uid, series_uid = generate_uid(), generate_uid()
    report = _report(
        make_instance,
        study_uid,
        _pdf(
            "FINDINGS", "A 6 mm nodule in the right upper lobe (Se 2 Im 7).", "Unchanged, series 2, image 9."
        ),
    )
    assoc = _assoc(scp.port)
    assert assoc.send_c_store(_image(make_instance, study_uid, series_uid, 2, 1)).Status == 0
    assert assoc.send_c_store(report).Status == 0
    completion = Completion(sessions)
    assert completion.promote("extract") == []  # neither referenced image has arrived
    assert assoc.send_c_store(_image(make_instance, study_uid, series_uid, 2, 7)).Status == 0
    assert completion.promote("extract") == []  # Se 2 Im 9 is still missing
    assert assoc.send_c_store(_image(make_instance, study_uid, series_uid, 2, 9)).Status == 0
    assoc.release()
    [(_, decision)] = completion.promote("extract")
    assert decision.reason == "report arrived: 2/2 referenced instances present"
    study = _study(sessions, study_uid)
    assert (study.state, study.stable_reason) == ("stable", decision.reason)


@pytest.mark.parametrize(
    "lines",
    [
        ("FINDINGS", "No acute abnormality. See Figure 2."),  # figures, not positions
        ("FINDINGS", "Nodule on Se 3 Im 45."),  # a position in another series number
    ],
)
def test_pdf_report_without_present_positions_leaves_the_study_to_the_timer(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset], lines: tuple[str, ...]
) -> None:
    scp = start_scp(stable_age=3600)
    study_uid, series_uid = generate_uid(), generate_uid()
    assoc = _assoc(scp.port)
    assert assoc.send_c_store(_image(make_instance, study_uid, series_uid, 2, 45)).Status == 0
    assert assoc.send_c_store(_report(make_instance, study_uid, _pdf(*lines))).Status == 0
    assoc.release()
    assert Completion(scp.mpps.sessions).promote("extract") == []
    assert _study(scp.mpps.sessions, study_uid).state == "receiving"
