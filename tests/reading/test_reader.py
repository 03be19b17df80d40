from __future__ import annotations

import hashlib
import io

import numpy as np
import pymupdf
import pytest
from PIL import Image
from report_fixtures import (
    BODY_ZH,
    CJK_FONT,
    FakeEngine,
    make_encapsulated,
    make_report_pdf,
    make_secondary_capture,
    make_sr,
    page_image,
    png_bytes,
)

from gateway.errors import ReadError
from gateway.reading import SCHEMA_VERSION, ReadingSettings, read_bytes, read_path, sniff
from gateway.reading.engines.base import OcrLine


def test_text_layer_pdf(report_pdf: bytes, settings: ReadingSettings) -> None:
    engine = FakeEngine([])
    result = read_bytes(report_pdf, filename="r.pdf", settings=settings, engine=engine)
    doc = result.document
    assert engine.calls == 0, "a page with a text layer is not OCR'd"
    assert doc.schema_version == SCHEMA_VERSION
    assert doc.source_kind == "pdf"
    assert doc.engine.name == "text-layer"
    assert doc.status == "preliminary"
    assert [p.source for p in doc.pages] == ["text-layer", "text-layer"]
    assert doc.pages[0].unit == "pt"
    texts = [p.text for p in doc.paragraphs]
    assert BODY_ZH in texts, "text-layer text is exact"
    assert not any("XX市人民医院" in t for t in texts), "running header removed"
    assert not any(t.startswith("第") and t.endswith("页") for t in texts), "page numbers removed"
    body = next(p for p in doc.paragraphs if p.text == BODY_ZH)
    assert body.section == "findings"
    refs = [(r.label, r.series, r.instance) for r in body.figure_refs]
    assert refs == [("figure:1", None, None), (None, 3, 45)]
    english = next(p for p in doc.paragraphs if p.text.startswith("Nodule"))
    assert english.section == "findings"
    assert [r.label for r in english.figure_refs] == ["figure:3", None]
    assert doc.paragraphs[-1].section == "impression"
    lines = [ln for b in doc.pages[0].blocks for ln in b.lines]
    assert all(ln.confidence == 1.0 and ln.font_size for ln in lines)


def test_embedded_figure_with_caption(report_pdf: bytes, settings: ReadingSettings) -> None:
    result = read_bytes(report_pdf, settings=settings, engine=FakeEngine([]))
    (figure,) = result.document.figures
    assert figure.page == 1
    assert figure.label == "figure:1"
    assert figure.number == 1
    assert figure.caption == "图1 右肺上叶结节"
    assert (figure.width, figure.height) == (120, 120)
    media, data = result.figure_images[figure.artifact]
    assert media == figure.media_type == "image/png"
    assert hashlib.sha256(data).hexdigest() == figure.sha256
    assert Image.open(io.BytesIO(data)).size == (120, 120)
    x0, _, x1, _ = figure.bbox
    assert x1 - x0 == pytest.approx(120, abs=1)


def test_schema_json_round_trip(report_pdf: bytes, settings: ReadingSettings) -> None:
    doc = read_bytes(report_pdf, settings=settings).document
    data = doc.model_dump(mode="json")
    keys = {"schema_version", "source_kind", "engine", "status", "pages", "paragraphs", "figures"}
    assert set(data) >= keys
    assert type(doc).model_validate(data) == doc


def test_scanned_page_is_ocrd(settings: ReadingSettings) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=300, height=200)
    page.insert_image(page.rect, stream=png_bytes(page_image(["x"], dpi=72, width=300, height=200)))
    engine = FakeEngine([OcrLine("印象：右肺结节，见图1。", (10, 10, 400, 40), 0.97)])
    result = read_bytes(doc.tobytes(), settings=settings, engine=engine)
    assert engine.calls == 1
    (page_out,) = result.document.pages
    assert page_out.source == "ocr"
    assert page_out.unit == "px"
    assert page_out.width == pytest.approx(300 * 150 / 72, abs=2)
    (para,) = result.document.paragraphs
    assert para.section == "impression"
    assert result.document.engine.name == "fake"


def test_page_with_text_and_scan_reports_both(settings: ReadingSettings) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=300, height=200)
    page.insert_image(page.rect, stream=png_bytes(page_image(["x"], dpi=72, width=300, height=200)))
    page.insert_text((20, 50), "FINDINGS: invisible text layer wins.", fontsize=10)
    engine = FakeEngine([OcrLine("FINDINGS: OCR reading.", (40, 80, 400, 110), 0.9)])
    doc_out = read_bytes(doc.tobytes(), settings=settings, engine=engine).document
    (page_out,) = doc_out.pages
    assert page_out.source == "text-layer"
    assert page_out.alternate is not None
    assert page_out.alternate.source == "ocr"
    assert page_out.alternate.blocks[0].lines[0].text == "FINDINGS: OCR reading."
    assert [p.text for p in doc_out.paragraphs] == ["FINDINGS: invisible text layer wins."]


def test_encrypted_pdf(tmp_path: object, settings: ReadingSettings) -> None:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret report text")
    data = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="o", user_pw="u")
    with pytest.raises(ReadError, match="encrypted"):
        read_bytes(data, settings=settings)


def test_corrupt_pdf(report_pdf: bytes, settings: ReadingSettings) -> None:
    with pytest.raises(ReadError, match=r"corrupt|unreadable|no text"):
        read_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 100, settings=settings, engine=FakeEngine([]))


def test_truncated_pdf_gives_text_or_read_error(report_pdf: bytes, settings: ReadingSettings) -> None:
    try:
        truncated = report_pdf[: len(report_pdf) // 3]
        doc = read_bytes(truncated, settings=settings, engine=FakeEngine([])).document
    except ReadError as exc:
        assert str(exc)
    else:
        assert doc.paragraphs


def test_too_many_pages(settings: ReadingSettings) -> None:
    doc = pymupdf.open()
    for _ in range(12):
        doc.new_page()
    with pytest.raises(ReadError, match="12 pages"):
        read_bytes(doc.tobytes(), settings=settings.model_copy(update={"max_pages": 10}))


def test_huge_page_is_rendered_smaller(settings: ReadingSettings) -> None:
    doc = pymupdf.open()
    doc.new_page(width=14000, height=14000)
    engine = FakeEngine([OcrLine("some text here", (1, 1, 300, 30), 0.9)])
    result = read_bytes(
        doc.tobytes(), settings=settings.model_copy(update={"max_render_pixels": 1_000_000}), engine=engine
    )
    assert any("rendered at" in w for w in result.document.warnings)
    assert result.document.pages[0].width * result.document.pages[0].height <= 1_000_000


def test_huge_image_is_refused(settings: ReadingSettings) -> None:
    buf = io.BytesIO()
    Image.new("L", (4000, 3000), 255).save(buf, format="PNG")
    with pytest.raises(ReadError, match="over the limit"):
        read_bytes(buf.getvalue(), settings=settings.model_copy(update={"max_image_pixels": 1_000_000}))


def test_time_limit(settings: ReadingSettings) -> None:
    data = make_report_pdf(pages=3, figure=False)
    with pytest.raises(ReadError, match="longer than the limit"):
        read_bytes(data, settings=settings.model_copy(update={"time_limit_s": 1e-9}))


def test_empty_page_is_not_an_error_but_no_text_is(settings: ReadingSettings) -> None:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 100), "FINDINGS: normal chest.", fontsize=11)
    doc.new_page()
    out = read_bytes(doc.tobytes(), settings=settings, engine=FakeEngine([])).document
    assert out.pages[1].blocks == []
    blank = pymupdf.open()
    blank.new_page()
    with pytest.raises(ReadError, match="no text found"):
        read_bytes(blank.tobytes(), settings=settings, engine=FakeEngine([]))


def test_unknown_and_empty_input(settings: ReadingSettings) -> None:
    with pytest.raises(ReadError, match="unknown document type"):
        read_bytes(b"hello world, not a report", settings=settings)
    with pytest.raises(ReadError, match="empty"):
        read_bytes(b"", settings=settings)


def test_sniff(report_pdf: bytes) -> None:
    assert sniff(report_pdf) == "pdf"
    assert sniff(png_bytes(np.zeros((4, 4, 3), np.uint8))) == "image"
    assert sniff(make_sr()) == "dicom"


def test_encapsulated_pdf(report_pdf: bytes, settings: ReadingSettings) -> None:
    doc = read_bytes(make_encapsulated(report_pdf), settings=settings, engine=FakeEngine([])).document
    assert doc.source_kind == "dicom-pdf"
    assert BODY_ZH in [p.text for p in doc.paragraphs]


def test_encapsulated_non_pdf(settings: ReadingSettings) -> None:
    with pytest.raises(ReadError, match="not a PDF"):
        read_bytes(make_encapsulated(b"<html>report</html>", mime="text/html"), settings=settings)
    with pytest.raises(ReadError, match="not a PDF"):
        read_bytes(make_encapsulated(b"GIF89a not a pdf"), settings=settings)


def test_structured_report(settings: ReadingSettings) -> None:
    engine = FakeEngine([])
    doc = read_bytes(make_sr(preliminary=True), settings=settings, engine=engine).document
    assert engine.calls == 0
    assert doc.source_kind == "dicom-sr"
    assert doc.engine.name == "dicom-sr"
    assert doc.status == "preliminary"
    assert doc.pages[0].source == "sr"
    pairs = [(p.text, p.section, p.heading) for p in doc.paragraphs]
    assert pairs == [
        ("Imaging Report", None, False),
        ("Findings", "findings", True),
        ("Nodule in right upper lobe, Se 3 Im 45.", "findings", False),
        ("Impression", "impression", True),
        ("Small pulmonary nodule (Figure 2).", "impression", False),
    ]
    assert doc.paragraphs[2].figure_refs[0].instance == 45
    assert read_bytes(make_sr(), settings=settings).document.status == "final"


def test_secondary_capture_goes_to_ocr(settings: ReadingSettings) -> None:
    engine = FakeEngine([OcrLine("结论：未见异常。", (5, 5, 200, 30), 0.99)])
    image = page_image(["结论"], dpi=72)
    doc = read_bytes(make_secondary_capture(image), settings=settings, engine=engine).document
    assert doc.source_kind == "dicom-image"
    assert engine.calls == 1
    assert doc.pages[0].width == image.shape[1]
    assert doc.paragraphs[0].section == "impression"


def test_read_path(tmp_path: object, report_pdf: bytes, settings: ReadingSettings) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "r.pdf"
    path.write_bytes(report_pdf)
    assert read_path(path, settings).document.paragraphs
    with pytest.raises(ReadError, match="cannot read"):
        read_path(Path(str(tmp_path)) / "missing.pdf", settings)


@pytest.mark.skipif(not CJK_FONT.exists(), reason="fonts-noto-cjk not installed")
def test_cjk_font_file_text_layer(settings: ReadingSettings) -> None:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_font(fontname="noto", fontfile=str(CJK_FONT))
    page.insert_text((72, 100), "影像表现：肝脏大小正常。", fontname="noto", fontsize=12)
    out = read_bytes(doc.tobytes(), settings=settings).document
    assert [(p.text, p.section) for p in out.paragraphs] == [("影像表现：肝脏大小正常。", "findings")]


def test_real_ocr_on_png(rapid_engine: object, settings: ReadingSettings) -> None:
    """One real OCR run: a small bilingual page image through the whole pipeline."""
    image = page_image(["检查所见：右肺结节，见图1。", "IMPRESSION: nodule Se 3 Im 45."], dpi=200)
    doc = read_bytes(png_bytes(image), settings=settings, engine=rapid_engine).document  # type: ignore[arg-type]
    assert doc.source_kind == "image"
    assert doc.engine.name == "rapidocr"
    text = "".join(p.text for p in doc.paragraphs).replace(" ", "")
    assert "右肺结节" in text
    refs = [r for p in doc.paragraphs for r in p.figure_refs]
    assert {r.label for r in refs if r.kind == "figure"} == {"figure:1"}
    assert {(r.series, r.instance) for r in refs if r.kind == "position"} == {(3, 45)}
    assert [p.section for p in doc.paragraphs] == ["findings", "impression"]
    line = doc.pages[0].blocks[0].lines[0]
    assert 0.5 <= line.confidence <= 1
    assert 0 <= line.bbox[0] < line.bbox[2] <= image.shape[1]


def test_repeated_references_are_capped_in_linear_time_and_bounded_memory(settings: ReadingSettings) -> None:
    """A 160 KB SR holding "Fig 1 " 26,667 times: the first max_figure_refs are kept, one warning."""
    import time
    import tracemalloc

    data = make_sr(finding="Fig 1 " * 26_667)
    read_bytes(make_sr(), settings=settings)  # imports and mappings loaded once, outside the measure
    tracemalloc.start()
    try:
        start = time.perf_counter()
        doc = read_bytes(data, settings=settings).document
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(len(p.figure_refs) for p in doc.paragraphs) == settings.max_figure_refs == 500
    dropped = [w for w in doc.warnings if "figure references" in w]
    assert dropped == [
        "more than 500 figure references; only the first 500 are kept (reading.max_figure_refs)"
    ]
    assert elapsed < 1.5, elapsed
    assert peak < 24 * 1024**2, peak


_BOMB_SCRIPT = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from report_fixtures import FakeEngine, make_pixel_bomb_pdf
from gateway.errors import ReadError
from gateway.reading import ReadingSettings, read_bytes
from gateway.reading.engines.base import OcrLine
out = {}
for scan in (False, True):
    data = make_pixel_bomb_pdf(scan=scan)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        engine = FakeEngine([OcrLine("text", (1, 1, 90, 20), 0.9)])
        doc = read_bytes(data, settings=ReadingSettings(dpi=150), engine=engine)
        result = {"warnings": doc.document.warnings, "text": [p.text for p in doc.document.paragraphs]}
    except ReadError as exc:
        result = {"error": str(exc)}
    result["rss_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    out["scan" if scan else "figure"] = result
print(json.dumps(out))
"""


def test_pixel_bomb_in_a_pdf_is_refused_by_its_dimensions() -> None:
    """A 30000 x 30000 image inside a PDF (a 30 KB stream) is refused before anything decodes it.

    Run in a fresh process, so that its peak RSS is its own: listing the images with hashes used to decode it
    in full (+860 MiB) although it was then logged as not extracted.
    """
    import json
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    run = subprocess.run(
        [sys.executable, "-c", _BOMB_SCRIPT, str(here)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(run.stdout.strip().splitlines()[-1])
    figure, scan = out["figure"], out["scan"]
    assert figure["text"] == ["FINDINGS: a report with a huge image, see Figure 1.", "Figure 1 huge"]
    assert figure["warnings"] == ["page 1: image of 30000x30000 px over the pixel limit, not extracted"]
    assert scan["error"] == (
        "page 1: image of 30000x30000 px is over the limit of 80000000 pixels (reading.max_image_pixels);"
        " the page cannot be OCR'd"
    )
    assert figure["rss_mib"] < 64, figure
    assert scan["rss_mib"] < 64, scan
