"""Page preparation before OCR: flattening a photographed page, evening its light, whitening coloured ink."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from report_fixtures import page_image, png_bytes

from gateway.reading import ReadingSettings, read_bytes
from gateway.reading.engines.rapidocr import RapidOcrEngine
from gateway.reading.images import (
    colour_ink_share,
    even_lighting,
    page_quad,
    prepare_page,
    suppress_colour_ink,
    without_marks,
)
from gateway.reading.text import compact

ROWS = ["右肺上叶见一磨玻璃结节", "Nodule in the right upper lobe"]


def photographed(page: np.ndarray, tilt: float = 0.18) -> tuple[np.ndarray, np.ndarray]:
    """The page on a dark desk, its top edge narrowed as a camera tilted by about 20° sees it."""
    h, w = page.shape[:2]
    pad = w // 4
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    top = [[pad + tilt * w, pad], [pad + w - tilt * w, pad + 10]]
    dst = np.array([*top, [pad + w, pad + h], [pad, pad + h]], np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    size = (w + 2 * pad, h + 2 * pad)
    desk = np.full((size[1], size[0], 3), (70, 55, 40), np.uint8)
    warped = cv2.warpPerspective(page, matrix, size)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), matrix, size) > 127
    return np.where(mask[:, :, None], warped, desk).astype(np.uint8), dst


def test_a_photographed_page_is_found_by_its_edges() -> None:
    photo, corners = photographed(page_image(ROWS, dpi=150))
    quad = page_quad(photo)
    assert quad is not None
    assert np.abs(quad - corners).max() < 12


def test_a_scan_has_no_page_outline() -> None:
    assert page_quad(page_image(ROWS, dpi=150)) is None
    _, done = prepare_page(page_image(ROWS, dpi=150))
    assert done == []


def test_uneven_light_is_evened_and_ink_stays_dark() -> None:
    page = page_image(ROWS, dpi=150).astype(np.float32)
    ramp = np.linspace(1.0, 0.55, page.shape[1], dtype=np.float32)[None, :, None]
    dim = (page * ramp).astype(np.uint8)
    out = even_lighting(dim)
    paper = out[page[:, :, 0] > 250]
    ink = out[page[:, :, 0] < 60]
    assert np.percentile(paper, 5) > 215
    assert np.median(ink) < 110


def test_coloured_ink_is_whitened_and_print_under_it_is_kept() -> None:
    image = np.full((100, 200, 3), 255, np.uint8)
    image[40:60, 20:180] = 0  # a printed stroke
    red = np.zeros((100, 200), np.uint8)
    cv2.circle(red, (100, 50), 35, 255, 6)
    tint = np.array((215, 40, 45), np.float32) / 255
    image = (image * np.where(red[:, :, None] > 0, tint, 1.0)).astype(np.uint8)
    cv2.line(image, (10, 90), (190, 80), (30, 60, 170), 3)  # blue pen
    assert colour_ink_share(image) > 0.01
    out = suppress_colour_ink(image)
    assert out[50, 40].max() < 60  # print
    assert out[50, 100 - 35].min() < 60  # print under the seal
    assert out[50 - 35, 100].min() > 200  # the seal's ring where there is no print
    assert out[85, 100].min() > 190  # pen
    _, changed = without_marks(page_image(ROWS, dpi=150))
    assert not changed


@pytest.fixture(scope="module")
def engine() -> RapidOcrEngine:
    return RapidOcrEngine(ReadingSettings(ocr_threads=2))


def test_pen_marks_never_reach_the_text(engine: RapidOcrEngine) -> None:
    from PIL import Image, ImageDraw, ImageFont

    page = page_image(ROWS, dpi=150)
    pil = Image.fromarray(page)
    draw = ImageDraw.Draw(pil)
    draw.ellipse((30, 20, 330, 70), outline=(30, 60, 170), width=3)  # a circle round the first line
    font = ImageFont.truetype("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 26)
    draw.text((640, 150), "已阅OK", fill=(30, 60, 170), font=font)  # a note in the margin
    marked = np.asarray(pil)
    doc = read_bytes(png_bytes(marked), settings=ReadingSettings(ocr_threads=2), engine=engine).document
    assert compact(doc.text) == compact("".join(ROWS))
    assert any("coloured pen" in w for w in doc.warnings)


def test_a_photographed_page_reads_like_the_scan(engine: RapidOcrEngine) -> None:
    photo, _ = photographed(page_image(ROWS, dpi=200))
    doc = read_bytes(png_bytes(photo), settings=ReadingSettings(ocr_threads=2), engine=engine).document
    assert compact(doc.text) == compact("".join(ROWS))
    assert any("perspective flattened" in w for w in doc.warnings)
