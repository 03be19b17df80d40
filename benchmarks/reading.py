"""Reading benchmark: generated report pages with exact ground truth, scored engine by engine.

Pages are Chinese and English radiology reports (sections, figure references, two-column pages, running
headers and footers, tables) drawn with the Debian Noto CJK fonts. Each page set is read three ways: as a
text-layer PDF, as clean 300 dpi scans, and as degraded scans (150 dpi, rotation within ±3°, blur, noise,
JPEG). Scores: CER (NFKC, whitespace removed), paragraph-boundary F1, section accuracy, figure-reference
precision and recall, and pages per second, for our pipeline per engine and for a direct ``RapidOCR()(img)``
call on the same images.

    .venv/bin/python benchmarks/reading.py --pages 4 [--engines rapidocr,tesseract] [--json out.json]

A script, not a test: it prints a table and exits 0.
"""

from __future__ import annotations

import argparse
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


class Writer:
    def __init__(self, page: Any) -> None:
        self.page = page
        self.font = pymupdf.Font(fontfile=REGULAR)
        self.bold = pymupdf.Font(fontfile=BOLD)
        page.insert_font(fontname="noto", fontfile=REGULAR)
        page.insert_font(fontname="notob", fontfile=BOLD)

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

    def text(self, x: float, y: float, text: str, size: float = SIZE, bold: bool = False) -> None:
        self.page.insert_text((x, y), text, fontname="notob" if bold else "noto", fontsize=size)

    def paragraph(self, text: str, x0: float, x1: float, y: float, size: float = SIZE) -> float:
        for line in self.wrap(text, x1 - x0, size):
            self.text(x0, y, line, size)
            y += size * 1.6
        return y + size * 1.0


def make_page(doc: Any, rng: random.Random, index: int, total: int) -> TruthPage:
    page = doc.new_page(width=W, height=H)
    w = Writer(page)
    zh = index % 2 == 0
    layout = ["single", "two-column", "table"][index % 3]
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
    y += LEAD * 2
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
                w.text(x0, y, heading, SIZE, bold=True)
                truth.paragraphs.append(TruthPara(heading, key))
                y += LEAD * 1.5
                for para in paras:
                    y = w.paragraph(para, x0, x1, y)
                    truth.paragraphs.append(TruthPara(para, key))
        return truth
    for heading, key, paras in blocks:
        w.text(50, y, heading, SIZE, bold=True)
        truth.paragraphs.append(TruthPara(heading, key))
        y += LEAD * 1.5
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
            for row in rows:
                for x, cell in zip((70, 250, 420), row, strict=True):
                    w.text(x, y, cell)
                truth.paragraphs.append(TruthPara(" ".join(row), key))
                y += LEAD * 1.4
            y += LEAD * 0.6
    return truth


def build(pages: int, seed: int) -> tuple[bytes, list[TruthPage]]:
    rng = random.Random(seed)
    doc = pymupdf.open()
    truths = [make_page(doc, rng, i, pages) for i in range(pages)]
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


def tiff(frames: list[np.ndarray]) -> bytes:
    buf = io.BytesIO()
    images = [Image.fromarray(f) for f in frames]
    images[0].save(buf, format="TIFF", save_all=True, append_images=images[1:])
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


def score_document(score: Score, truths: list[TruthPage], doc: Document) -> None:
    for number, truth in enumerate(truths, start=1):
        paras = [(p.text, p.section) for p in doc.paragraphs if p.page == number]
        score_page(score, truth, paras)
    score.pages += len(truths)


def run_direct(frames: list[np.ndarray], truths: list[TruthPage]) -> Score:
    """RapidOCR called directly, text only (it has no paragraphs or sections)."""
    from rapidocr_onnxruntime import RapidOCR

    ocr = RapidOCR()
    ocr(frames[0][:200, :200])  # warm up
    score = Score(layout=False)
    for frame, truth in zip(frames, truths, strict=True):
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        start = time.perf_counter()
        result, _ = ocr(bgr)
        score.seconds += time.perf_counter() - start
        text = "\n".join(r[1] for r in result or [])
        score_page(score, truth, [(text, None)])
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--engines", default="rapidocr,tesseract", help="comma list; transformers needs a model"
    )
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads (0 = runtime default)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    pdf, truths = build(args.pages, args.seed)
    clean = render(pdf, 300)
    rng = random.Random(args.seed + 1)
    degraded = [degrade(f, rng) for f in render(pdf, 150)]
    settings = ReadingSettings(ocr_threads=args.threads)
    rows: list[tuple[str, str, dict[str, Any]]] = []

    rows.append(("text-layer PDF", "pymupdf", run_pipeline(pdf, truths, settings, None).row()))
    engines: dict[str, OcrEngine] = {}
    for name in [e for e in args.engines.split(",") if e]:
        try:
            engines[name] = make_engine(name, settings)
        except Exception as exc:
            print(f"engine {name}: skipped ({exc})", file=sys.stderr)
    for label, frames in (("clean scan 300dpi", clean), ("degraded scan 150dpi", degraded)):
        data = tiff(frames)
        for name, engine in engines.items():
            if name == "rapidocr":
                engine.read(frames[0][:200, :200])  # warm up like the direct call
            rows.append((label, f"ours/{name}", run_pipeline(data, truths, settings, engine).row()))
        rows.append((label, "direct RapidOCR", run_direct(frames, truths).row()))

    def fmt(v: Any) -> str:
        return "   n/a" if v is None else f"{v:6.3f}" if isinstance(v, float) else str(v)

    print(f"{args.pages} pages, seed {args.seed}")
    heads = ("CER", "paraF1", "sect", "refP", "refR", "pages/s")
    print(f"{'input':22} {'reader':18} " + " ".join(f"{h:>7}" for h in heads))
    for label, reader, r in rows:
        cer = f"{100 * r['cer']:5.2f}%"
        vals = [fmt(r[k]) for k in ("para_f1", "section_acc", "ref_precision", "ref_recall", "pages_per_s")]
        print(f"{label:22} {reader:18} {cer:>7} " + " ".join(f"{v:>7}" for v in vals))
    if args.json:
        args.json.write_text(json.dumps([{"input": a, "reader": b, **c} for a, b, c in rows], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
