"""Report builders for the tests: PDFs (PyMuPDF), images, and DICOM Encapsulated PDF / SR / SC (pydicom)."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


# --- Generated layouts: one or two columns, figures with captions, true boxes -------------------------------


@dataclass
class Fig:
    caption: str
    height: float = 150.0
    panels: int = 1  # a montage of 2 or 4 panels side by side, under one caption
    seed: int = 0


@dataclass
class Para:
    text: str
    size: float = 10.5
    bold: bool = False
    break_after: int | None = None  # a column break after this many of its lines
    figure_after: tuple[int, Fig] | None = None  # a figure set between two of its lines


@dataclass
class ColumnBreak:
    pass


@dataclass
class FigureTruth:
    page: int
    bbox: tuple[float, float, float, float]  # points
    caption: str


_TOKENS = re.compile(r"[A-Za-z0-9.,;:()\[\]\-–/'%]+|\s+|.")


def wrap(text: str, width: float, size: float, font: pymupdf.Font) -> list[str]:
    """Greedy line breaking at word boundaries (one CJK character is a word), as a typesetter would."""
    lines: list[str] = []
    current = ""
    for token in _TOKENS.findall(text):
        candidate = current + token
        if current.strip() and font.text_length(candidate.rstrip(), fontsize=size) > width:
            lines.append(current.strip())
            current = token.lstrip()
        else:
            current = candidate
    if current.strip():
        lines.append(current.strip())
    return lines


def medical_image(seed: int, width: int, height: int) -> np.ndarray:
    """A CT-like grey image: dark field, a textured body ellipse with organs, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width / 2, height / 2
    body = ((xx - cx) / (0.45 * width)) ** 2 + ((yy - cy) / (0.4 * height)) ** 2 <= 1
    img = np.full((height, width), 12.0, np.float32)
    img[body] = 110
    for _ in range(6):
        ox, oy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
        r = rng.uniform(0.05, 0.15) * min(width, height)
        blob = (xx - ox) ** 2 + (yy - oy) ** 2 <= r * r
        img[blob & body] = rng.uniform(30, 230)
    img += rng.normal(0, 12, img.shape)
    grey = np.clip(img, 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def montage(seed: int, width: int, height: int, panels: int) -> np.ndarray:
    cols, rows = (panels, 1) if panels <= 2 else (2, 2)
    pw, ph = (width - 4 * (cols - 1)) // cols, (height - 4 * (rows - 1)) // rows
    out = np.zeros((height, width, 3), np.uint8)
    for k in range(panels):
        r, c = divmod(k, cols)
        out[r * (ph + 4) : r * (ph + 4) + ph, c * (pw + 4) : c * (pw + 4) + pw] = medical_image(
            seed + k, pw, ph
        )
    return out


def build_report(
    items: list[Para | Fig | ColumnBreak],
    *,
    columns: int = 1,
    size: tuple[float, float] = (595, 842),
    margin: float = 56,
    gutter: float = 28,
    title: str | None = None,
) -> tuple[bytes, list[FigureTruth]]:
    """Typeset a report: paragraphs wrapped at the column width, columns filled top to bottom, left first.

    Everything is set in Noto Sans CJK, which has Latin glyphs too. Returns the PDF and each figure's true
    box.
    """
    font = pymupdf.Font(fontfile=str(CJK_FONT))
    doc = pymupdf.open()
    width, height = size
    col_w = (width - 2 * margin - gutter * (columns - 1)) / columns
    truths: list[FigureTruth] = []
    state: dict[str, Any] = {"page": None, "col": 0, "y": 0.0, "lines": 0, "top": 0.0}

    def new_page() -> None:
        page = doc.new_page(width=width, height=height)
        page.insert_font(fontname="noto", fontfile=str(CJK_FONT))
        y = margin
        if title and doc.page_count == 1:
            page.insert_text((margin, y + 16), title, fontname="noto", fontsize=16)
            y += 40
        state.update(page=page, col=0, y=y, lines=0, top=y)

    def next_column() -> None:
        if state["col"] + 1 < columns:
            state.update(col=state["col"] + 1, y=state["top"], lines=0)
        else:
            new_page()

    def room(h: float) -> None:
        if state["y"] + h > height - margin:
            next_column()

    def figure(item: Fig) -> None:
        cap_lines = wrap(item.caption, col_w, 9, font)
        need = item.height + 6 + len(cap_lines) * 13 + 10
        if state["y"] + need > height - margin:
            next_column()
        x = margin + state["col"] * (col_w + gutter)
        page = state["page"]
        fig_w = min(col_w, item.height * (1.0 if item.panels == 1 else (2.0 if item.panels == 2 else 1.2)))
        rect = pymupdf.Rect(x, state["y"], x + fig_w, state["y"] + item.height)
        pixels = (
            medical_image(item.seed, int(fig_w * 2), int(item.height * 2))
            if item.panels == 1
            else montage(item.seed, int(fig_w * 2), int(item.height * 2), item.panels)
        )
        page.insert_image(rect, stream=png_bytes(pixels))
        truths.append(FigureTruth(doc.page_count, (rect.x0, rect.y0, rect.x1, rect.y1), item.caption))
        y = rect.y1 + 6
        for text in cap_lines:
            page.insert_text((x, y + 9), text, fontname="noto", fontsize=9)
            y += 13
        state["y"] = y + 10

    new_page()
    for item in items:
        if isinstance(item, ColumnBreak):
            next_column()
            continue
        if isinstance(item, Fig):
            figure(item)
            continue
        lh = item.size * 1.45
        for k, text in enumerate(wrap(item.text, col_w, item.size, font)):
            if k and k == item.break_after:
                next_column()
            if item.figure_after and k and k == item.figure_after[0]:
                state["y"] += 4
                figure(item.figure_after[1])
            room(lh)
            x = margin + state["col"] * (col_w + gutter)
            page = state["page"]
            page.insert_text((x, state["y"] + item.size), text, fontname="noto", fontsize=item.size)
            state["y"] += lh
            state["lines"] += 1
        state["y"] += item.size * 0.8
    return bytes(doc.tobytes(garbage=3, deflate=True)), truths


def render_page(
    pdf: bytes, number: int, dpi: int = 150, noise: float = 0.0, jpeg: int | None = None
) -> np.ndarray:
    """Page ``number`` (1-based) rendered as a scan: optional grey noise and JPEG compression."""
    doc = pymupdf.open(stream=pdf, filetype="pdf")
    pix = doc[number - 1].get_pixmap(dpi=dpi, alpha=False)
    image = np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, 3).copy()
    if noise:
        rng = np.random.default_rng(number)
        image = np.clip(image + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8)
    if jpeg is not None:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=jpeg)
        image = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).copy()
    return image


def break_between(before: str, after: str, width: float, size: float = 10.5) -> tuple[str, int]:
    """Text whose greedy wrap ends a line right after ``before`` and starts the next with ``after``.

    Plain words are added just before the last line's text (greedy wrapping is stable on a prefix, so earlier
    lines do not move) until the next word no longer fits. Returns the text and the number of lines up to the
    break.
    """
    font = pymupdf.Font(fontfile=str(CJK_FONT))
    head = wrap(before, width, size, font)
    done = before[: before.rindex(head[-1])] if len(head) > 1 else ""
    tail = head[-1]
    first = _TOKENS.findall(after)[0]
    cjk = not first.isascii()
    joiner = "" if cjk else " "
    pool = (
        list("两肺野透亮度正常未见明显异常密度影")
        if cjk
        else ["there", "is", "no", "other", "new", "finding", "and", "the", "image", "quality", "is", "good"]
    )
    for step in range(400):
        lines = wrap(done + tail, width, size, font)
        if font.text_length(lines[-1] + joiner + first, fontsize=size) > width:
            return done + tail + joiner + after, len(lines)
        for word in (pool[step % len(pool)], "a", "so"):
            candidate = word + ("" if cjk else " ") + tail
            if len(wrap(done + candidate, width, size, font)) == len(head):
                tail = candidate
                break
        else:
            raise AssertionError("no filler fits")
    raise AssertionError("no break found")


def make_pixel_bomb_pdf(side: int = 30000, *, scan: bool = False) -> bytes:
    """A PDF holding a ``side`` x ``side`` grey image whose Flate stream is a few KB (the decoder pads it to
    side² bytes): a figure beside a text layer, or (``scan``) the whole page without text."""
    import zlib

    doc = pymupdf.open()
    page = doc.new_page()
    if scan:
        rect = page.rect
    else:
        page.insert_text((72, 72), "FINDINGS: a report with a huge image, see Figure 1.", fontsize=11)
        rect = pymupdf.Rect(72, 100, 250, 278)
        page.insert_text((72, rect.y1 + 14), "Figure 1 huge", fontsize=9)
    xref = page.insert_image(rect, stream=png_bytes(np.zeros((64, 64, 3), np.uint8)))
    doc.update_stream(xref, zlib.compress(b"\0" * (side * 64), 9), compress=False)
    for key, value in (
        ("Width", str(side)),
        ("Height", str(side)),
        ("BitsPerComponent", "8"),
        ("ColorSpace", "/DeviceGray"),
        ("Filter", "/FlateDecode"),
        ("DecodeParms", "null"),
        ("SMask", "null"),
    ):
        doc.xref_set_key(xref, key, value)
    return bytes(doc.tobytes())
