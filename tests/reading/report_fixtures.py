"""Report builders for the tests: PDFs (PyMuPDF), images, and DICOM Encapsulated PDF / SR / SC (pydicom)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pymupdf
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from gateway.reading.engines.base import OcrLine

CJK_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
SR_COMPREHENSIVE = "1.2.840.10008.5.1.4.1.1.88.33"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

BODY_ZH = "右肺上叶见一结节影，大小约8mm，边界清晰，见图1及Se 3 Im 45。"
IMPRESSION_ZH = "右肺上叶小结节，建议随访（图２）。"


def _figure_png(size: int = 120) -> bytes:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def make_report_pdf(pages: int = 2, *, figure: bool = True, status: str = "初步报告") -> bytes:
    """A bilingual text-layer report: running header, sections, a figure with caption, page numbers."""
    doc = pymupdf.open()
    for n in range(pages):
        page = doc.new_page()
        page.insert_text((72, 40), f"XX市人民医院 放射科 {status}", fontname="china-s", fontsize=9)
        y = 100.0
        if n == 0:
            rows = [
                ("检查所见：", 11),
                (BODY_ZH, 11),
                ("FINDINGS", 11),
                ("Nodule in the right upper lobe (Figure 3), series 4, image 112.", 11),
                ("诊断意见：", 11),
                (IMPRESSION_ZH, 11),
            ]
            for text, size in rows:
                font = "helv" if text.isascii() else "china-s"
                page.insert_text((72, y), text, fontname=font, fontsize=size)
                y += 20
            if figure:
                rect = pymupdf.Rect(72, y + 10, 192, y + 130)
                page.insert_image(rect, stream=_figure_png())
                page.insert_text((72, rect.y1 + 14), "图1 右肺上叶结节", fontname="china-s", fontsize=9)
        else:
            text = "IMPRESSION: stable appearance, no new lesion."
            page.insert_text((72, y), text, fontname="helv", fontsize=11)
        page.insert_text((280, 800), f"第 {n + 1} 页", fontname="china-s", fontsize=9)
    return bytes(doc.tobytes())


def page_image(text_rows: list[str], dpi: int = 150, width: float = 420, height: float = 140) -> np.ndarray:
    """A small rendered page (RGB) with the given rows, for OCR tests."""
    doc = pymupdf.open()
    page = doc.new_page(width=width, height=height)
    y = 30.0
    for row in text_rows:
        page.insert_text((20, y), row, fontname="china-s", fontsize=12)
        y += 24
    pix = page.get_pixmap(dpi=dpi, alpha=False)
    return np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, 3).copy()


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _base_dataset(sop_class: str, modality: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientID = "P1"
    return ds


def dicom_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def make_encapsulated(payload: bytes, mime: str = "application/pdf") -> bytes:
    ds = _base_dataset(ENCAPSULATED_PDF, "DOC")
    ds.MIMETypeOfEncapsulatedDocument = mime
    ds.EncapsulatedDocument = payload + (b"\0" if len(payload) % 2 else b"")
    return dicom_bytes(ds)


def _code(meaning: str, value: str = "121071", scheme: str = "DCM") -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _text_item(name: str, text: str) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = [_code(name)]
    item.TextValue = text
    return item


def make_sr(preliminary: bool = False, finding: str = "Nodule in right upper lobe, Se 3 Im 45.") -> bytes:
    ds = _base_dataset(SR_COMPREHENSIVE, "SR")
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = [_code("Imaging Report", "18748-4", "LN")]
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    if preliminary:
        ds.PreliminaryFlag = "PRELIMINARY"
    findings = Dataset()
    findings.RelationshipType = "CONTAINS"
    findings.ValueType = "CONTAINER"
    findings.ContinuityOfContent = "SEPARATE"
    findings.ConceptNameCodeSequence = [_code("Findings", "121070")]
    findings.ContentSequence = [_text_item("Finding", finding)]
    ds.ContentSequence = [findings, _text_item("Impression", "Small pulmonary nodule (Figure 2).")]
    return dicom_bytes(ds)


def make_secondary_capture(image: np.ndarray) -> bytes:
    ds = _base_dataset(SECONDARY_CAPTURE, "OT")
    gray = image.mean(axis=2).astype(np.uint8)
    ds.Rows, ds.Columns = gray.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = gray.tobytes()
    return dicom_bytes(ds)


class FakeEngine:
    """A test double: returns fixed lines for any image and counts calls."""

    name = "fake"
    version = "1"

    def __init__(self, lines: list[OcrLine]) -> None:
        self.lines = lines
        self.calls = 0

    def read(self, image: np.ndarray) -> list[OcrLine]:
        self.calls += 1
        return list(self.lines)
