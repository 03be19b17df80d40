"""Figures inside scanned pages: found, cut out and tied to their captions (gateway/reading/regions.py)."""

from __future__ import annotations

import io

import numpy as np
import pymupdf
import pytest
from PIL import Image
from report_fixtures import (
    CJK_FONT,
    FakeEngine,
    Fig,
    FigureTruth,
    Para,
    build_report,
    make_secondary_capture,
    png_bytes,
    render_page,
)

from gateway.reading import ReadingSettings, read_bytes
from gateway.reading.document import BBox
from gateway.reading.engines.base import OcrLine
from gateway.reading.regions import find_regions

pytestmark = pytest.mark.skipif(not CJK_FONT.exists(), reason="fonts-noto-cjk not installed")

DPI = 150
EN = "FINDINGS: A solid nodule in the right upper lobe measures eight millimetres with smooth margins. " * 4
ITEMS = [
    Para(EN),
    Fig("Figure 1. Axial CT, right upper lobe nodule", height=150),
    Para(EN),
    Fig("图2 右肺上叶结节，左右对比", height=120, panels=2, seed=3),
    Para("诊断意见：右肺上叶小结节。" * 5),
    Fig("Figure 3. Four views of the nodule", height=160, panels=4, seed=7),
    Para(EN),
]


def iou(a: BBox, b: BBox) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def in_pixels(truth: FigureTruth, dpi: int = DPI) -> BBox:
    s = dpi / 72
    x0, y0, x1, y1 = truth.bbox
    return (x0 * s, y0 * s, x1 * s, y1 * s)


def text_layer_as_ocr(pdf: bytes, number: int, dpi: int = DPI) -> list[OcrLine]:
    """The page's exact lines in image pixels: an OCR double that reads perfectly."""
    page = pymupdf.open(stream=pdf, filetype="pdf")[number - 1]
    s = dpi / 72
    out = []
    for block in page.get_text("dict")["blocks"]:
        for line in block.get("lines", []):
            text = "".join(span["text"] for span in line["spans"]).replace("\xa0", " ").strip()
            if text:
                x0, y0, x1, y1 = line["bbox"]
                out.append(OcrLine(text, (x0 * s, y0 * s, x1 * s, y1 * s), 0.99))
    return out


class PageEngine(FakeEngine):
    """Returns each page's lines in turn."""

    def __init__(self, pages: list[list[OcrLine]]) -> None:
        super().__init__([])
        self.pages = pages

    def read(self, image: np.ndarray) -> list[OcrLine]:
        self.calls += 1
        return list(self.pages[self.calls - 1])


def image_only_pdf(pages: list[np.ndarray]) -> bytes:
    doc = pymupdf.open()
    for image in pages:
        page = doc.new_page(width=595, height=842)
        page.insert_image(page.rect, stream=png_bytes(image))
    return bytes(doc.tobytes())


@pytest.mark.parametrize("columns", [1, 2])
@pytest.mark.parametrize("degraded", [False, True])
def test_each_figure_is_found_with_a_covering_box(columns: int, degraded: bool) -> None:
    pdf, truths = build_report(ITEMS, columns=columns)
    pages = {t.page for t in truths}
    for number in pages:
        image = render_page(pdf, number, dpi=DPI, noise=6 if degraded else 0, jpeg=70 if degraded else None)
        found = find_regions(image, [ln.bbox for ln in text_layer_as_ocr(pdf, number)], ReadingSettings())
        expected = [in_pixels(t) for t in truths if t.page == number]
        assert len(found) == len(expected), (found, expected)
        for box in expected:
            assert max(iou(box, f) for f in found) >= 0.8
        # Without any text boxes (an engine that read nothing) text blocks still are not figures.
        assert len(find_regions(image, [], ReadingSettings())) == len(expected)


def test_a_page_without_figures_gives_none() -> None:
    pdf, _ = build_report([Para(EN), Para("诊断意见：右肺上叶小结节，建议随访。" * 6), Para(EN)])
    image = render_page(pdf, 1, dpi=DPI, noise=6, jpeg=70)
    # A logo smaller than min_figure_side, a red stamp outline, a signature-like scribble, rules.
    image[60:100, 60:100] = (20, 60, 160)
    yy, xx = np.mgrid[0:160, 0:160]
    ring = np.abs(np.hypot(yy - 80, xx - 80) - 70) < 3
    image[1300:1460, 900:1060][ring] = (200, 30, 30)
    image[1500:1503, 120:1100] = 0
    rng = np.random.default_rng(2)
    for _ in range(40):
        y, x = rng.integers(1550, 1620), rng.integers(700, 1000)
        image[y : y + 3, x : x + 25] = 30
    assert find_regions(image, [], ReadingSettings()) == []
    assert find_regions(np.full((800, 600, 3), 255, np.uint8), [], ReadingSettings()) == []


def test_a_bordered_figure_is_found() -> None:
    pdf, truths = build_report([Para(EN), Fig("Figure 1. Bordered", height=150), Para(EN)])
    image = render_page(pdf, 1, dpi=DPI)
    x0, y0, x1, y1 = (int(v) for v in in_pixels(truths[0]))
    frame = (x0 - 12, y0 - 12, x1 + 12, y1 + 12)
    image[frame[1] : frame[3], frame[0] : frame[0] + 2] = 0
    image[frame[1] : frame[3], frame[2] - 2 : frame[2]] = 0
    image[frame[1] : frame[1] + 2, frame[0] : frame[2]] = 0
    image[frame[3] - 2 : frame[3], frame[0] : frame[2]] = 0
    (found,) = find_regions(image, [], ReadingSettings())
    assert max(iou(found, in_pixels(truths[0])), iou(found, frame)) >= 0.8


def test_scanned_pdf_figures_are_cut_out_and_labelled_by_their_captions(settings: ReadingSettings) -> None:
    pdf, truths = build_report(ITEMS, columns=1)
    numbers = sorted({t.page for t in truths} | {1, 2})
    scans = [render_page(pdf, n, dpi=DPI, noise=4, jpeg=80) for n in numbers]
    engine = PageEngine([text_layer_as_ocr(pdf, n) for n in numbers])
    result = read_bytes(
        image_only_pdf(scans), settings=settings.model_copy(update={"dpi": DPI}), engine=engine
    )
    doc = result.document
    figures = doc.figures
    assert [f.source for f in figures] == ["page-region"] * 3
    assert [f.label for f in figures] == ["figure:1", "figure:2", "figure:3"]
    assert [f.caption for f in figures] == [t.caption for t in truths]
    assert len({f.artifact for f in figures}) == 3
    for figure, truth in zip(figures, truths, strict=True):
        assert figure.page == truth.page
        assert iou(figure.bbox, in_pixels(truth)) >= 0.8  # the rendered page is at the same dpi
        media, data = result.figure_images[figure.artifact]
        assert media == figure.media_type == "image/png"
        with Image.open(io.BytesIO(data)) as png:
            assert png.size == (figure.width, figure.height)
    captions = [p.text for p in doc.paragraphs if p.role == "caption"]
    assert captions == [t.caption for t in truths]
    assert not any("Figure" in p.text or "图2" in p.text for p in doc.paragraphs if p.role == "body")


def test_secondary_capture_page_gives_its_figure(settings: ReadingSettings) -> None:
    pdf, truths = build_report([Para(EN), Fig("图1 右肺上叶结节", height=150), Para(EN)])
    page = render_page(pdf, 1, dpi=DPI)
    engine = FakeEngine(text_layer_as_ocr(pdf, 1))
    result = read_bytes(make_secondary_capture(page), settings=settings, engine=engine)
    (figure,) = result.document.figures
    assert (figure.source, figure.label, figure.caption) == ("page-region", "figure:1", "图1 右肺上叶结节")
    assert iou(figure.bbox, in_pixels(truths[0])) >= 0.8


def test_real_ocr_scan_with_a_montage(rapid_engine: object, settings: ReadingSettings) -> None:
    """One real OCR run over a degraded scan: the caption read by OCR labels the region below it."""
    items = [
        Para("检查所见：右肺上叶见一实性结节，大小约八毫米，见图2A。"),
        Fig("图2 右肺上叶结节，左右对比", height=130, panels=2, seed=3),
        Para("IMPRESSION: Stable nodule, see Figure 2, left and right."),
    ]
    pdf, truths = build_report(items)
    scan = render_page(pdf, 1, dpi=DPI, noise=5, jpeg=75)
    doc = read_bytes(png_bytes(scan), settings=settings, engine=rapid_engine).document  # type: ignore[arg-type]
    (figure,) = doc.figures
    assert (figure.source, figure.label) == ("page-region", "figure:2")
    assert iou(figure.bbox, in_pixels(truths[0])) >= 0.8
    assert [p.role for p in doc.paragraphs] == ["body", "caption", "body"]
    refs = [(r.label, r.panel) for p in doc.paragraphs if p.role == "body" for r in p.figure_refs]
    assert refs == [("figure:2", "A"), ("figure:2", "A"), ("figure:2", "B")]


def test_searchable_scan_takes_its_figures_from_the_page_image(settings: ReadingSettings) -> None:
    """A scanner's PDF: the page image with an invisible text layer. Figures come from the image, in points,
    with captions from the exact text layer."""
    pdf, truths = build_report([Para(EN), Fig("Figure 1. Axial CT", height=150), Para(EN)])
    scan = render_page(pdf, 1, dpi=DPI, noise=4, jpeg=80)
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_image(page.rect, stream=png_bytes(scan))
    for line in text_layer_as_ocr(pdf, 1):
        x0, y0, _, y1 = (v * 72 / DPI for v in line.bbox)
        page.insert_text((x0, y1 - 0.25 * (y1 - y0)), line.text, fontsize=(y1 - y0) * 0.75, render_mode=3)
    engine = FakeEngine(text_layer_as_ocr(pdf, 1))
    out = read_bytes(doc.tobytes(), settings=settings.model_copy(update={"dpi": DPI}), engine=engine).document
    assert out.pages[0].source == "text-layer"
    (figure,) = out.figures
    assert (figure.source, figure.label, figure.caption) == ("page-region", "figure:1", "Figure 1. Axial CT")
    assert iou(figure.bbox, truths[0].bbox) >= 0.8  # points, like the page
    assert [p.role for p in out.paragraphs].count("caption") == 1
