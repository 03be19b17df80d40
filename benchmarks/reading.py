"""Reading benchmark: generated report pages with exact ground truth, scored per page kind and engine.

Pages are Chinese and English radiology reports (sections, figure references, two-column pages, running
headers and footers, tables) drawn with the Debian Noto CJK fonts. Each seed gives these page kinds:

- clean scan 300dpi, and the text-layer PDF it was printed from;
- degraded scan 150dpi: rotation within ±3°, blur, noise, JPEG 60;
- fax 150dpi binarised: skew within ±1.5°, a slight stretch, a fixed threshold, speckle, streaks;
- phone photo: the page on a desk seen by a camera tilted 8–25° (plus yaw and roll), uneven light, a soft
  shadow, moiré, noise, JPEG 85;
- pen marks: ticks, circles round words, a signature and a note in the margin (Kai font) in blue or red;
- red seals: one or two round department seals stamped over the text, unevenly inked;
- fonts: Song (Noto Serif CJK), Kai (AR PL UKai), Hei (WenQuanYi Zen Hei), Ming (AR PL UMing), bold body,
  7 pt small print; one per page, rotating with the seed;
- ruled table: a measurements table with its grid on every page.

Scores: CER (NFKC, whitespace removed), paragraph-boundary F1, section accuracy, figure-reference precision
and recall, pages per second, and for tables the share of truth cells found at their row and column of a
``table`` block. Readers: our pipeline per engine (``rapidocr:<model set>``, ``tesseract``), and the
libraries' own ``RapidOCR()(img)`` calls (rapidocr-onnxruntime PP-OCRv4, rapidocr 3 PP-OCRv6) on the same
images, text only (their line order interleaves two columns, so their CER includes reading-order errors).

    .venv/bin/python benchmarks/reading.py --pages 2 --seeds 7,8 [--engines rapidocr:ppocr-v6,tesseract]
        [--kinds phone,pen] [--no-direct] [--json out.json]

A script, not a test: it prints a table and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import io
import json
import os
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pymupdf
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.reading import Document, ReadingSettings, find_figure_refs, read_bytes
from gateway.reading.engines import OcrEngine, make_engine
from gateway.reading.text import compact

REGULAR = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
BOLD = "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"
W, H = 595.0, 842.0
SIZE = 11.0
LEAD = SIZE * 1.6

ZH_SENTENCES = [
    "右肺上叶尖段见一磨玻璃结节，大小约8mm×6mm，边界清楚",
    "肝脏形态大小正常，肝实质密度均匀，未见明显异常密度影",
    "双肺纹理增多，走行自然，未见明确实变影",
    "纵隔内未见明显肿大淋巴结，心影大小形态正常",
    "胆囊不大，壁不厚，腔内未见异常密度影",
    "左肾下极见一类圆形低密度影，增强扫描未见强化",
    "脑实质内未见异常密度影，脑室系统未见扩张",
    "胸腔内未见积液，胸膜未见增厚",
]
EN_SENTENCES = [
    "There is a 6 mm ground-glass nodule in the right upper lobe",
    "The liver is normal in size with homogeneous attenuation",
    "No pleural effusion or pneumothorax is identified",
    "The heart size is within normal limits without pericardial effusion",
    "Mild degenerative changes are present in the thoracic spine",
    "A small hypodense lesion in the left kidney likely represents a simple cyst",
    "The mediastinal lymph nodes are not enlarged by size criteria",
]
ZH_SECTIONS = [("检查方法", "technique"), ("检查所见", "findings"), ("诊断意见", "impression")]
EN_SECTIONS = [
    ("INDICATION", "indication"),
    ("TECHNIQUE", "technique"),
    ("COMPARISON", "comparison"),
    ("FINDINGS", "findings"),
    ("IMPRESSION", "impression"),
]


@dataclass
class TruthPara:
    text: str
    section: str | None


@dataclass
class TruthPage:
    paragraphs: list[TruthPara] = field(default_factory=list)
    refs: list[tuple[Any, ...]] = field(default_factory=list)
    table: list[list[str]] = field(default_factory=list)


def _ref(rng: random.Random, zh: bool) -> tuple[str, tuple[Any, ...]]:
    n, s, i = rng.randint(1, 9), rng.randint(2, 12), rng.randint(1, 300)
    choices = [
        (f"图{n}", ("figure", n)),
        (f"附图{n}", ("figure", n)),
        (f"Figure {n}", ("figure", n)),
        (f"Fig. {n}", ("figure", n)),
        (f"Image {n}", ("figure", n)),
        (f"IMG {n}", ("figure", n)),
        (f"Se {s} Im {i}", ("position", s, i)),
        (f"series {s}, image {i}", ("position", s, i)),
        (f"({s}:{i})", ("position", s, i)),
        (f"(image {i} of series {s})", ("position", s, i)),
    ]
    if not zh:
        choices = [c for c in choices if not c[0].startswith(("图", "附图"))]
    return rng.choice(choices)


def _sentence(rng: random.Random, zh: bool, refs: list[tuple[Any, ...]]) -> str:
    base = rng.choice(ZH_SENTENCES if zh else EN_SENTENCES)
    if rng.random() < 0.6:
        raw, key = _ref(rng, zh)
        refs.append(key)
        base += f"（见{raw}）" if zh else f" ({raw})" if not raw.startswith("(") else f" {raw}"
    return base + ("。" if zh else ".")


@dataclass(frozen=True)
class Style:
    """How a page is printed: its fonts (regular, bold), body size, and a forced layout."""

    name: str = "Noto Sans CJK"
    regular: str = REGULAR
    bold: str = BOLD
    size: float = SIZE
    layout: str | None = None  # "single" | "two-column" | "table"; None cycles through them
    ruled: bool = False  # draw the table's grid


class Writer:
    def __init__(self, page: Any, style: Style = Style()) -> None:
        self.page = page
        self.size = style.size
        self.font = pymupdf.Font(fontfile=style.regular)
        self.bold = pymupdf.Font(fontfile=style.bold)
        page.insert_font(fontname="noto", fontfile=style.regular)
        page.insert_font(fontname="notob", fontfile=style.bold)

    def wrap(self, text: str, width: float, size: float, bold: bool = False) -> list[str]:
        font = self.bold if bold else self.font
        tokens = re.findall(r"[A-Za-z0-9.,:;()'/×-]+ ?| |.", text)
        lines, current = [], ""
        for tok in tokens:
            if current and font.text_length((current + tok).rstrip(), fontsize=size) > width:
                lines.append(current.rstrip())
                current = tok.lstrip()
            else:
                current += tok
        if current.strip():
            lines.append(current.rstrip())
        return lines

    def text(self, x: float, y: float, text: str, size: float | None = None, bold: bool = False) -> None:
        self.page.insert_text((x, y), text, fontname="notob" if bold else "noto", fontsize=size or self.size)

    def paragraph(self, text: str, x0: float, x1: float, y: float, size: float | None = None) -> float:
        size = size or self.size
        for line in self.wrap(text, x1 - x0, size):
            self.text(x0, y, line, size)
            y += size * 1.6
        return y + size * 1.0


def make_page(doc: Any, rng: random.Random, index: int, total: int, style: Style = Style()) -> TruthPage:
    page = doc.new_page(width=W, height=H)
    w = Writer(page, style)
    zh = index % 2 == 0
    layout = style.layout or ["single", "two-column", "table"][index % 3]
    size = style.size
    lead = size * 1.6
    truth = TruthPage()
    w.text(50, 36, "XX市第一人民医院 医学影像科 GENERAL HOSPITAL RADIOLOGY", 9)
    w.text(270, 815, f"第 {index + 1} 页 共 {total} 页" if zh else f"Page {index + 1} of {total}", 9)
    title = "胸部CT检查报告" if zh else "CT CHEST REPORT"
    w.text(50, 95, title, 16, bold=True)
    truth.paragraphs.append(TruthPara(title, None))
    y = 128.0
    cells = ["姓名：张某", "性别：男", "年龄：56岁"] if zh else ["Name: J. Doe", "Sex: M", "Age: 56"]
    for x, cell in zip((50, 240, 420), cells, strict=True):
        w.text(x, y, cell)
    truth.paragraphs.append(TruthPara(" ".join(cells), None))
    y += lead * 2
    sections = ZH_SECTIONS if zh else EN_SECTIONS
    blocks: list[tuple[str, str, list[str]]] = []
    for heading, key in sections:
        paras = [
            "".join(
                _sentence(rng, zh, truth.refs) + ("" if zh else " ") for _ in range(rng.randint(1, 3))
            ).strip()
            for _ in range(rng.randint(1, 2))
        ]
        blocks.append((heading + ("：" if zh else ":"), key, paras))
    if layout == "two-column":
        half = (len(blocks) + 1) // 2
        top = y
        for column, chunk in ((0, blocks[:half]), (1, blocks[half:])):
            x0, x1 = (50.0, 287.0) if column == 0 else (308.0, 545.0)
            y = top
            for heading, key, paras in chunk:
                w.text(x0, y, heading, size, bold=True)
                truth.paragraphs.append(TruthPara(heading, key))
                y += lead * 1.5
                for para in paras:
                    y = w.paragraph(para, x0, x1, y)
                    truth.paragraphs.append(TruthPara(para, key))
        return truth
    for heading, key, paras in blocks:
        w.text(50, y, heading, size, bold=True)
        truth.paragraphs.append(TruthPara(heading, key))
        y += lead * 1.5
        for para in paras:
            y = w.paragraph(para, 50, 545, y)
            truth.paragraphs.append(TruthPara(para, key))
        if layout == "table" and key == "findings":
            header = ["部位", "大小", "密度"] if zh else ["Site", "Size", "Density"]
            rows = [header] + [
                [
                    rng.choice(["右肺上叶", "左肾", "肝右叶"] if zh else ["RUL", "Left kidney", "Liver"]),
                    f"{rng.randint(3, 30)}mm",
                    rng.choice(["磨玻璃", "实性", "囊性"] if zh else ["solid", "cystic"]),
                ]
                for _ in range(3)
            ]
            top = y - lead
            for row in rows:
                for x, cell in zip((70, 250, 420), row, strict=True):
                    w.text(x, y, cell)
                truth.paragraphs.append(TruthPara(" ".join(row), key))
                truth.table.append(row)
                y += lead * 1.4
            if style.ruled:
                bottom = y - lead
                xs = (60.0, 240.0, 410.0, 540.0)
                for k in range(len(rows) + 1):
                    yy = top + k * lead * 1.4 + lead * 0.35
                    page.draw_line((xs[0], yy), (xs[-1], yy), width=0.8)
                for xx in xs:
                    page.draw_line((xx, top + lead * 0.35), (xx, bottom + lead * 0.35), width=0.8)
            y += lead * 0.6
    return truth


def build(pages: int, seed: int, styles: list[Style] | None = None) -> tuple[bytes, list[TruthPage]]:
    rng = random.Random(seed)
    doc = pymupdf.open()
    # Pages alternate Chinese and English: a style holds for a pair, so every font prints Chinese too.
    truths = [
        make_page(doc, rng, i, pages, styles[(i // 2) % len(styles)] if styles else Style())
        for i in range(pages)
    ]
    doc.subset_fonts()
    return doc.tobytes(garbage=3, deflate=True), truths


def render(pdf: bytes, dpi: int) -> list[np.ndarray]:
    doc = pymupdf.open(stream=pdf, filetype="pdf")
    out = []
    for page in doc:
        pix = page.get_pixmap(dpi=dpi, alpha=False)
        out.append(np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, 3).copy())
    return out


def degrade(img: np.ndarray, rng: random.Random) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-3, 3), 1.0)
    out = cv2.warpAffine(img, m, (w, h), borderValue=(255, 255, 255))
    out = cv2.GaussianBlur(out, (0, 0), 0.7)
    noise = np.random.default_rng(rng.randint(0, 1 << 30)).normal(0, 8, out.shape)
    out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    _, jpg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 60])
    return cv2.imdecode(jpg, cv2.IMREAD_UNCHANGED)


SERIF = "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"
SERIF_BOLD = "/usr/share/fonts/opentype/noto/NotoSerifCJK-Bold.ttc"
KAI = "/usr/share/fonts/truetype/arphic/ukai.ttc"
MING = "/usr/share/fonts/truetype/arphic/uming.ttc"
HEI = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
FONT_STYLES = [
    Style("Song (Noto Serif CJK)", SERIF, SERIF_BOLD),
    Style("Kai (AR PL UKai)", KAI, KAI),
    Style("Hei (WenQuanYi Zen Hei)", HEI, HEI),
    Style("Ming (AR PL UMing)", MING, MING),
    Style("bold body (Noto Sans CJK Bold)", BOLD, BOLD),
    Style("7 pt small print", REGULAR, BOLD, size=7.0),
]
TABLE_STYLES = [Style("ruled measurements table", layout="table", ruled=True)]


def _np_rng(rng: random.Random) -> np.random.Generator:
    return np.random.default_rng(rng.randint(0, 1 << 30))


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    _, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(jpg, cv2.IMREAD_UNCHANGED)


def photo(img: np.ndarray, rng: random.Random) -> np.ndarray:
    """A phone photo of the printed page: tilted up to 25° (a camera rotation, not a shear), on a desk,
    with uneven light, a shadow, moiré, sensor noise and JPEG."""
    nrng = _np_rng(rng)
    h, w = img.shape[:2]
    pad = int(0.12 * max(h, w))
    ch, cw = h + 2 * pad, w + 2 * pad
    desk = np.empty((ch, cw, 3), np.float32)
    desk[:] = (rng.uniform(60, 120), rng.uniform(50, 100), rng.uniform(40, 80))
    desk += nrng.normal(0, 6, desk.shape)
    tilt = np.radians(rng.uniform(8, 25)) * rng.choice([-1, 1])
    yaw = np.radians(rng.uniform(-8, 8))
    roll = np.radians(rng.uniform(-6, 6))
    f = 1.3 * max(h, w)
    rx = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    k = np.array([[f, 0, cw / 2], [0, f, ch / 2], [0, 0, 1]])
    shift = np.array([[1, 0, pad - cw / 2], [0, 1, pad - ch / 2], [0, 0, 1]])
    # page plane at depth f, centred on the optical axis, rotated, projected
    hom = k @ (rz @ ry @ rx) @ np.array([[1, 0, 0], [0, 1, 0], [0, 0, f]]) @ np.linalg.inv(k) @ shift
    corners = cv2.perspectiveTransform(np.array([[[0, 0], [w, 0], [w, h], [0, h]]], np.float32), hom)[0]
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    fit = min((cw - 2 * pad * 0.3) / (hi[0] - lo[0]), (ch - 2 * pad * 0.3) / (hi[1] - lo[1]))
    place = np.array(
        [
            [fit, 0, cw / 2 - fit * (lo[0] + hi[0]) / 2],
            [0, fit, ch / 2 - fit * (lo[1] + hi[1]) / 2],
            [0, 0, 1],
        ]
    )
    hom = place @ hom
    page = cv2.warpPerspective(img, hom, (cw, ch), flags=cv2.INTER_LINEAR).astype(np.float32)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), hom, (cw, ch)) > 127
    out = np.where(mask[:, :, None], page, desk)
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx / cw + np.sin(angle) * yy / ch
    ramp = (ramp - ramp.min()) / max(1e-6, float(np.ptp(ramp)))
    light = 1.0 - rng.uniform(0.25, 0.45) * ramp
    cx, cy = rng.uniform(0.2, 0.8) * cw, rng.uniform(0.2, 0.8) * ch
    light *= 1.0 - 0.15 * (((xx - cx) / cw) ** 2 + ((yy - cy) / ch) ** 2)
    shadow = np.zeros((ch, cw), np.uint8)
    x0 = int(rng.uniform(0.3, 0.7) * cw)
    poly = np.array(
        [
            [x0, 0],
            [x0 + int(0.25 * cw), 0],
            [x0 + int(rng.uniform(0, 0.4) * cw), ch],
            [x0 - int(0.1 * cw), ch],
        ]
    )
    cv2.fillPoly(shadow, [poly], 255)
    shadow_f = cv2.GaussianBlur(shadow.astype(np.float32) / 255, (0, 0), 25)
    light *= 1.0 - rng.uniform(0.2, 0.35) * shadow_f
    out *= light[:, :, None]
    period = rng.uniform(3.0, 6.0)
    phi = rng.uniform(0, np.pi)
    moire = np.sin(2 * np.pi * (xx * np.cos(phi) + yy * np.sin(phi)) / period) * np.sin(
        2 * np.pi * xx / (period * 1.07)
    )
    out += 7 * moire[:, :, None]
    out += nrng.normal(0, 4, out.shape)
    return _jpeg(np.clip(out, 0, 255).astype(np.uint8), 85)


PEN_BLUE = (30, 60, 170)
PEN_RED = (190, 35, 40)
SEAL_RED = (215, 40, 45)


def _ink(
    img: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], strength: float = 0.9
) -> np.ndarray:
    """Ink laid over print: multiply blend, so print under it stays dark."""
    alpha = (mask.astype(np.float32) / 255.0 * strength)[:, :, None]
    tint = np.array(colour, np.float32) / 255.0
    out = img.astype(np.float32) * (1 - alpha + alpha * tint)
    return np.clip(out, 0, 255).astype(np.uint8)


def _text_mask(
    shape: tuple[int, int], text: str, xy: tuple[int, int], size: int, angle: float, font: str
) -> np.ndarray:
    from PIL import ImageDraw, ImageFont

    layer = Image.new("L", (shape[1], shape[0]), 0)
    patch = Image.new("L", (size * (len(text) + 1), size * 2), 0)
    ImageDraw.Draw(patch).text((size // 2, size // 3), text, fill=255, font=ImageFont.truetype(font, size))
    patch = patch.rotate(angle, expand=True)
    layer.paste(patch, xy, patch)
    return np.asarray(layer)


def _on_ink(img: np.ndarray, rng: random.Random) -> tuple[int, int]:
    """A random point on the printed text: marks and seals land over it, not in the empty half."""
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    ys, xs = np.nonzero(gray[::8, ::8] < 128)
    i = rng.randrange(len(ys))
    return int(xs[i] * 8), int(ys[i] * 8)


def pen_marks(img: np.ndarray, rng: random.Random) -> np.ndarray:
    """Ticks, circles round words, a signature and a pen note in the margin, in blue or red ballpoint."""
    h, w = img.shape[:2]
    nrng = _np_rng(rng)
    mask = np.zeros((h, w), np.uint8)
    t = max(3, w // 600)
    for _ in range(rng.randint(3, 6)):  # ticks beside lines
        x, y = _on_ink(img, rng)
        s = int(w * 0.015)
        cv2.polylines(
            mask, [np.array([[x, y], [x + s, y + s], [x + 3 * s, y - 2 * s]])], False, 255, t, cv2.LINE_AA
        )
    for _ in range(rng.randint(1, 3)):  # circles round a word
        cx, cy = _on_ink(img, rng)
        cv2.ellipse(
            mask,
            (cx, cy),
            (int(w * rng.uniform(0.05, 0.1)), int(h * 0.012)),
            rng.uniform(-8, 8),
            0,
            rng.uniform(330, 360),
            255,
            t,
            cv2.LINE_AA,
        )
    # a signature: a smooth random scribble near the bottom right
    pts = []
    x, y = 0.62 * w, 0.9 * h
    for i in range(60):
        x += w * 0.004
        y = 0.9 * h + 0.012 * h * np.sin(i / 3.0 + nrng.normal(0, 0.3)) + nrng.normal(0, 2)
        pts.append([int(x), int(y)])
    cv2.polylines(mask, [np.array(pts)], False, 255, t, cv2.LINE_AA)
    side = rng.choice([0.005, 0.9])
    note = rng.choice(["复查", "已阅", "随访3月", "OK", "f/u", "请对比"])
    mask = np.maximum(
        mask,
        _text_mask(
            (h, w),
            note,
            (int(side * w), int(rng.uniform(0.3, 0.6) * h)),
            int(w * 0.025),
            rng.uniform(-20, 20),
            KAI,
        ),
    )
    return _ink(img, mask, rng.choice([PEN_BLUE, PEN_RED]))


def seal(img: np.ndarray, rng: random.Random) -> np.ndarray:
    """A red round seal (rings, a star, the department's name round the edge) stamped over the text."""
    from PIL import ImageDraw, ImageFont

    h, w = img.shape[:2]
    out = img
    for _ in range(rng.randint(1, 2)):
        r = int(w * rng.uniform(0.08, 0.11))
        cx, cy = _on_ink(img, rng)
        layer = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(layer)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=255, width=max(4, r // 18))
        star = [
            (
                cx + r * 0.3 * np.cos(np.pi / 2 + k * 4 * np.pi / 5),
                cy - r * 0.3 * np.sin(np.pi / 2 + k * 4 * np.pi / 5),
            )
            for k in range(5)
        ]
        draw.polygon(star, fill=255)
        font = ImageFont.truetype(REGULAR, max(10, r // 5))
        name = "第一人民医院影像科专用章"
        for i, ch in enumerate(name):
            theta = np.radians(200 + i * 140 / (len(name) - 1))
            glyph = Image.new("L", (r // 4, r // 4), 0)
            ImageDraw.Draw(glyph).text((0, 0), ch, fill=255, font=font)
            glyph = glyph.rotate(-np.degrees(theta) - 90, expand=True)
            gx, gy = cx + 0.72 * r * np.cos(theta), cy + 0.72 * r * np.sin(theta)
            layer.paste(glyph, (int(gx - glyph.width / 2), int(gy - glyph.height / 2)), glyph)
        mask = np.asarray(layer)
        # stamp ink is uneven: some of it does not take
        speckle = _np_rng(rng).random(mask.shape) > 0.15
        out = _ink(out, (mask * speckle).astype(np.uint8), SEAL_RED, rng.uniform(0.7, 0.9))
    return out


def fax(img: np.ndarray, rng: random.Random) -> np.ndarray:
    """A 150 dpi fax: slightly skewed and stretched, binarised, with speckle and a streak or two."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-1.5, 1.5), 1.0)
    m[1] *= rng.uniform(0.98, 1.02)
    out = cv2.warpAffine(img, m, (w, h), borderValue=(255, 255, 255))
    gray = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    binary = np.where(gray < rng.uniform(150, 185), 0, 255).astype(np.uint8)
    nrng = _np_rng(rng)
    noise = nrng.random(binary.shape)
    binary[noise < 0.002] = 0
    binary[noise > 0.995] = 255
    for _ in range(rng.randint(0, 2)):
        y = rng.randint(0, h - 2)
        binary[y : y + 1, :] = np.where(nrng.random(w) < 0.3, 0, binary[y, :])
    return np.repeat(binary[:, :, None], 3, axis=2)


KINDS = (
    "clean scan 300dpi",
    "degraded scan 150dpi",
    "fax 150dpi binarised",
    "phone photo",
    "pen marks",
    "red seals",
    "fonts (Song/Kai/Hei/Ming/bold/7pt)",
    "ruled table",
)


def page_kinds(
    pages: int, seed: int, wanted: list[str] | None = None
) -> list[tuple[str, bytes, list[TruthPage], list[np.ndarray]]]:
    """Each kind: its label, the PDF it was printed from, the ground truth, and the page images.

    Only the ``wanted`` kinds (label prefixes) are generated. The degradations draw from one random
    sequence in the order of :data:`KINDS`, so leaving out a scanned kind changes the draws of the scanned
    kinds after it; the font and table pages draw nothing and are always the same.
    """
    chosen = [k for k in KINDS if not wanted or any(k.startswith(w) for w in wanted)]
    kinds = []
    pdf, truths = build(pages, seed)
    rng = random.Random(seed + 1)
    scanned = [k for k in KINDS[:6] if k in chosen]
    clean = render(pdf, 300) if scanned else []
    makers = {
        "clean scan 300dpi": lambda: clean,
        "degraded scan 150dpi": lambda: [degrade(f, rng) for f in render(pdf, 150)],
        "fax 150dpi binarised": lambda: [fax(f, rng) for f in render(pdf, 150)],
        "phone photo": lambda: [photo(f, rng) for f in render(pdf, 200)],
        "pen marks": lambda: [pen_marks(f, rng) for f in clean],
        "red seals": lambda: [seal(f, rng) for f in clean],
    }
    for label in scanned:
        kinds.append((label, pdf, truths, makers[label]()))
    if KINDS[6] in chosen:
        rot = seed % len(FONT_STYLES)
        fpdf, ftruths = build(pages, seed + 2, FONT_STYLES[rot:] + FONT_STYLES[:rot])
        kinds.append((KINDS[6], fpdf, ftruths, render(fpdf, 300)))
    if KINDS[7] in chosen:
        tpdf, ttruths = build(pages, seed + 3, TABLE_STYLES)
        kinds.append((KINDS[7], tpdf, ttruths, render(tpdf, 300)))
    return kinds


def tiff(frames: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    images = [Image.fromarray(f) for f in frames]
    # Lossless compression keeps a dozen 300 dpi pages under reading.max_input_bytes.
    images[0].save(buf, format="TIFF", save_all=True, append_images=images[1:], compression="tiff_lzw")
    return buf.getvalue()


# -- scoring ----------------------------------------------------------------------------------------------
def levenshtein(a: str, b: str) -> int:
    if not a or not b:
        return max(len(a), len(b))
    bb = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    prev = np.arange(len(b) + 1, dtype=np.int32)
    ramp = np.arange(len(b) + 1, dtype=np.int32)
    for i, ch in enumerate(a.encode("utf-32-le").decode("utf-32-le"), start=1):
        cost = (bb != ord(ch)).astype(np.int32)
        cur = np.empty_like(prev)
        cur[0] = i
        cur[1:] = np.minimum(prev[1:] + 1, prev[:-1] + cost)
        cur = np.minimum.accumulate(cur - ramp) + ramp
        prev = cur
    return int(prev[-1])


@dataclass
class Score:
    chars: int = 0
    errors: int = 0
    tp_b: int = 0
    n_pred_b: int = 0
    n_true_b: int = 0
    sec_ok: int = 0
    sec_n: int = 0
    ref_tp: int = 0
    ref_pred: int = 0
    ref_true: int = 0
    pages: int = 0
    seconds: float = 0.0
    layout: bool = True
    cell_ok: int = 0
    cell_n: int = 0

    def row(self) -> dict[str, Any]:
        p = self.tp_b / self.n_pred_b if self.n_pred_b else 0.0
        r = self.tp_b / self.n_true_b if self.n_true_b else 0.0
        return {
            "cer": self.errors / max(1, self.chars),
            "para_f1": (2 * p * r / (p + r) if p + r else 0.0) if self.layout else None,
            "section_acc": (self.sec_ok / self.sec_n if self.sec_n else 0.0) if self.layout else None,
            "ref_precision": self.ref_tp / self.ref_pred if self.ref_pred else 0.0,
            "ref_recall": self.ref_tp / self.ref_true if self.ref_true else 0.0,
            "pages_per_s": self.pages / self.seconds if self.seconds else 0.0,
            "table_cells": self.cell_ok / self.cell_n if self.cell_n else None,
        }


def _ref_key(ref: Any) -> tuple[Any, ...]:
    return ("figure", ref.number) if ref.kind == "figure" else ("position", ref.series, ref.instance)


def score_page(score: Score, truth: TruthPage, paras: list[tuple[str, str | None]]) -> None:
    """Score one page: ``paras`` are predicted (text, section) in reading order."""
    t_text, t_bounds, t_secs = "", set(), []
    for p in truth.paragraphs:
        c = compact(p.text)
        t_text += c
        t_secs.extend([p.section] * len(c))
        t_bounds.add(len(t_text))
    p_text, p_bounds, p_secs = "", set(), []
    for text, section in paras:
        c = compact(text)
        p_text += c
        p_secs.extend([section] * len(c))
        p_bounds.add(len(p_text))
    score.chars += len(t_text)
    score.errors += levenshtein(p_text, t_text)
    matcher = difflib.SequenceMatcher(None, p_text, t_text, autojunk=False)
    mapping: dict[int, int] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size + 1):
            mapping[block.a + k] = block.b + k
        for k in range(block.size):
            score.sec_n += 1
            score.sec_ok += p_secs[block.a + k] == t_secs[block.b + k]
    mapped = {mapping[b] for b in p_bounds if b in mapping}
    score.n_pred_b += len(p_bounds)
    score.n_true_b += len(t_bounds)
    score.tp_b += sum(1 for b in t_bounds if any(abs(b - m) <= 1 for m in mapped))
    predicted = Counter(_ref_key(r) for text, _ in paras for r in find_figure_refs(text))
    true = Counter(truth.refs)
    score.ref_tp += sum((predicted & true).values())
    score.ref_pred += sum(predicted.values())
    score.ref_true += sum(true.values())


def score_table(score: Score, truth: TruthPage, page: Any) -> None:
    """Cells of the truth table found at the same row and column of a ``table`` block on the page."""
    if not truth.table:
        return
    got = [
        [compact(c.text) if c else "" for c in row]
        for block in page.blocks
        if block.kind == "table"
        for row in block.rows
    ]
    for i, row in enumerate(truth.table):
        for j, cell in enumerate(row):
            score.cell_n += 1
            score.cell_ok += i < len(got) and j < len(got[i]) and got[i][j] == compact(cell)


def score_document(score: Score, truths: list[TruthPage], doc: Document) -> None:
    for number, truth in enumerate(truths, start=1):
        paras = [(p.text, p.section) for p in doc.paragraphs if p.page == number]
        score_page(score, truth, paras)
        score_table(score, truth, next(p for p in doc.pages if p.number == number))
    score.pages += len(truths)


def direct_engines() -> dict[str, Any]:
    """The libraries' own calls on the same pages: rapidocr-onnxruntime (PP-OCRv4), rapidocr 3 (PP-OCRv6)."""
    out: dict[str, Any] = {}
    from rapidocr_onnxruntime import RapidOCR as RapidOCRv4

    v4 = RapidOCRv4()
    out["direct rapidocr-ort v4"] = lambda bgr: [r[1] for r in (v4(bgr)[0] or [])]
    try:
        import logging

        from rapidocr import RapidOCR as RapidOCRv3

        v6 = RapidOCRv3()
        logging.getLogger("RapidOCR").setLevel(logging.WARNING)
        out["direct rapidocr3 v6"] = lambda bgr: list(v6(bgr).txts or [])
    except ImportError:
        print("rapidocr 3 not installed: its direct call is skipped", file=sys.stderr)
    return out


def run_direct(frames: list[np.ndarray], truths: list[TruthPage], ocr: Any) -> Score:
    """A library called directly, text only (it has no paragraphs or sections)."""
    ocr(np.ascontiguousarray(frames[0][:200, :200, ::-1]))  # warm up
    score = Score(layout=False)
    for frame, truth in zip(frames, truths, strict=True):
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        start = time.perf_counter()
        texts = ocr(bgr)
        score.seconds += time.perf_counter() - start
        score_page(score, truth, [("\n".join(texts), None)])
        score.pages += 1
    return score


def run_pipeline(
    data: bytes, truths: list[TruthPage], settings: ReadingSettings, engine: OcrEngine | None
) -> Score:
    score = Score()
    start = time.perf_counter()
    doc = read_bytes(data, settings=settings, engine=engine).document
    score.seconds = time.perf_counter() - start
    score_document(score, truths, doc)
    return score


def merge(total: Score, part: Score) -> None:
    for f in dataclasses.fields(Score):
        if f.name != "layout":
            setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))
    total.layout = part.layout


def make_engines(spec: str, threads: int) -> dict[str, tuple[OcrEngine, ReadingSettings]]:
    """``rapidocr:ppocr-v6,tesseract`` -> reader label -> (engine, settings)."""
    out: dict[str, tuple[OcrEngine, ReadingSettings]] = {}
    for item in [e for e in spec.split(",") if e]:
        name, _, models = item.partition(":")
        settings = ReadingSettings(ocr_threads=threads)
        if models:
            settings = settings.model_copy(update={"ocr_models": models})
        try:
            engine = make_engine(name, settings)
        except Exception as exc:
            print(f"engine {item}: skipped ({exc})", file=sys.stderr)
            continue
        out[f"ours/{item}"] = (engine, settings)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2, help="pages per kind and seed")
    parser.add_argument("--seeds", default="7", help="comma list of seeds")
    parser.add_argument(
        "--engines",
        default="rapidocr:ppocr-v4,rapidocr:ppocr-v5,rapidocr:ppocr-v6,tesseract",
        help="comma list of engine[:model set]; transformers needs a model",
    )
    parser.add_argument("--kinds", default="", help="comma list of page-kind prefixes (default: all)")
    parser.add_argument(
        "--no-direct", action="store_true", help="skip the libraries' direct RapidOCR() calls"
    )
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = runtime default)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--no-structured",
        action="store_true",
        help="skip the structured-extraction scores (benchmarks/structured_findings.py) after the table",
    )
    parser.add_argument("--structured-seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    engines = make_engines(args.engines, args.threads)
    direct = {} if args.no_direct else direct_engines()
    wanted = [k for k in args.kinds.split(",") if k]
    scores: dict[tuple[str, str], Score] = {}
    seeds = [int(x) for x in args.seeds.split(",") if x]
    for seed in seeds:
        for label, pdf, truths, frames in page_kinds(args.pages, seed, wanted):
            if label.startswith("clean"):
                base = ReadingSettings(ocr_threads=args.threads)
                merge(
                    scores.setdefault(("text-layer PDF", "pymupdf"), Score()),
                    run_pipeline(pdf, truths, base, None),
                )
            data = tiff(frames)
            for reader, (engine, settings) in engines.items():
                engine.read(frames[0][:200, :200])  # warm up like the direct call
                merge(
                    scores.setdefault((label, reader), Score()), run_pipeline(data, truths, settings, engine)
                )
            for reader, ocr in direct.items():
                merge(scores.setdefault((label, reader), Score()), run_direct(frames, truths, ocr))
            print(f"seed {seed}: {label} done", file=sys.stderr, flush=True)
            if args.json:  # after each kind, so a long run that is stopped still leaves its figures
                partial = [{"input": k[0], "reader": k[1], **v.row()} for k, v in scores.items()]
                args.json.write_text(json.dumps(partial, indent=2))
    rows = [(label, reader, score.row()) for (label, reader), score in scores.items()]

    def fmt(v: Any) -> str:
        return "   n/a" if v is None else f"{v:6.3f}" if isinstance(v, float) else str(v)

    print(f"{args.pages} pages per kind and seed, seeds {','.join(map(str, seeds))}")
    heads = ("CER", "paraF1", "sect", "refP", "refR", "pages/s", "cells")
    print(f"| {'input':34} | {'reader':24} | " + " | ".join(f"{h:>7}" for h in heads) + " |")
    for label, reader, r in rows:
        cer = f"{100 * r['cer']:5.2f}%"
        keys = ("para_f1", "section_acc", "ref_precision", "ref_recall", "pages_per_s", "table_cells")
        vals = [fmt(r[k]) for k in keys]
        print(f"| {label:34} | {reader:24} | {cer:>7} | " + " | ".join(f"{v:>7}" for v in vals) + " |")
    if args.json:
        args.json.write_text(json.dumps([{"input": a, "reader": b, **c} for a, b, c in rows], indent=2))
    if not args.no_structured:
        # what the read sentences become: finding, site, size, negation ... (gateway.structure)
        print()
        structured_scores(args.structured_seed)
    return 0


def structured_scores(seed: int) -> None:
    """Print the structured-extraction scores of ``benchmarks/structured_findings.py`` (generated and
    hand-written labelled sentences, precision and recall per field)."""
    import importlib.util

    path = Path(__file__).resolve().parent / "structured_findings.py"
    spec = importlib.util.spec_from_file_location("structured_findings_bench", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    module.main(["--seed", str(seed)])


if __name__ == "__main__":
    raise SystemExit(main())
