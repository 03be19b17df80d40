"""`gateway read` on each input the issue names: text-layer PDF, scanned PDF, PNG, DICOM PDF/SR/SC."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pymupdf
import pytest
from report_fixtures import (
    make_encapsulated,
    make_report_pdf,
    make_secondary_capture,
    make_sr,
    page_image,
    png_bytes,
)

from gateway.cli import main

ROWS = ["FINDINGS: Nodule, see Se 3 Im 45.", "IMPRESSION: Small nodule."]


def _scanned_pdf() -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=420, height=140)
    page.insert_image(page.rect, stream=png_bytes(page_image(ROWS, dpi=300)))
    return bytes(doc.tobytes())


INPUTS: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "text-layer PDF": ("report.pdf", lambda: make_report_pdf(1), "text-layer"),
    "scanned PDF": ("scan.pdf", _scanned_pdf, "ocr"),
    "PNG": ("page.png", lambda: png_bytes(page_image(ROWS, dpi=300)), "ocr"),
    "Encapsulated PDF DICOM": ("report-pdf.dcm", lambda: make_encapsulated(make_report_pdf(1)), "text-layer"),
    "SR DICOM": ("report-sr.dcm", make_sr, "sr"),
    "Secondary Capture DICOM": (
        "page-sc.dcm",
        lambda: make_secondary_capture(page_image(ROWS, dpi=300)),
        "ocr",
    ),
}


@pytest.mark.parametrize("kind", list(INPUTS))
def test_read_command(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name, build, source = INPUTS[kind]
    path = tmp_path / name
    path.write_bytes(build())
    assert main(["read", str(path), "--json", "--data-dir", str(tmp_path / "data")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema_version"] and doc["engine"]["name"]
    assert doc["pages"][0]["source"] == source
    refs = [r for p in doc["paragraphs"] for r in p["figure_refs"]]
    assert refs, doc["paragraphs"]
    assert {p["section"] for p in doc["paragraphs"]} & {"findings", "impression"}
