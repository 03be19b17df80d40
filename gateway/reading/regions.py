"""Figures inside scanned pages: image regions found on a page image, cut out as PNG.

A scanned report (image-only PDF, PNG/JPEG/TIFF, DICOM Secondary Capture) carries its figures in its pixels.
A figure region is what is left of the page's ink once the text lines the OCR engine found are blanked out,
closed into solid blobs, and kept when it looks like an image rather than stray text, rules or a stamp:

- at least ``min_figure_side`` pixels on each side, and not the whole page (a frame around the page);
- mostly ink inside its box (a grey-level image fills its box; text, rules and outlined stamps do not);
- image-like statistics: grey-level spread and edges inside the box.

Side-by-side or stacked boxes of about the same size with a narrow gutter are one figure (a montage of
panels under one caption; the aligner splits panels). All of this is a pure function of the image and the
text boxes.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage

from gateway.reading.document import BBox
from gateway.reading.engines.base import Image
from gateway.reading.settings import ReadingSettings

_WORK_SIDE = 1000  # regions are found on a copy of the page scaled to this long side
MAX_REGIONS = 12  # per page; more blobs than this is a page of noise, not of figures


@dataclass(frozen=True)
class Region:
    bbox: BBox  # pixels of the page image
    png: bytes
    sha256: str
    width: int
    height: int


def _merge_panels(boxes: list[list[int]], gap: float) -> list[list[int]]:
    """Join boxes that sit side by side (or one above the other) with a gutter narrower than ``gap``."""
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                v_overlap = min(a[3], b[3]) - max(a[1], b[1])
                h_overlap = min(a[2], b[2]) - max(a[0], b[0])
                h_gap = max(a[0], b[0]) - min(a[2], b[2])
                v_gap = max(a[1], b[1]) - min(a[3], b[3])
                side = v_overlap >= 0.7 * min(a[3] - a[1], b[3] - b[1]) and h_gap <= gap
                stacked = h_overlap >= 0.7 * min(a[2] - a[0], b[2] - b[0]) and v_gap <= gap
                if side or stacked:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def _runs(profile: npt.NDArray[np.float64], threshold: float, min_len: float) -> tuple[int, int] | None:
    """The extent of the runs of ``profile`` at or over ``threshold`` that are at least ``min_len`` long."""
    high = np.concatenate([[False], profile >= threshold, [False]])
    edges = np.flatnonzero(np.diff(high.astype(np.int8)))
    runs = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= min_len]
    if not runs:
        return None
    return runs[0][0], runs[-1][1]


def _trim(ink: npt.NDArray[np.uint8], box: list[int], window: int, min_len: float) -> list[int] | None:
    """Shrink a blob's box to the rows and columns that are mostly ink.

    A grey-level image is ink almost everywhere in its box; a text line closed onto it is not (smoothed over
    a line's height, text covers well under half of its rows). So text set tight against a figure, which
    the closing joined to it, is cut off again.
    """
    x0, y0, x1, y1 = box
    kernel = np.ones(window) / window
    rows = np.convolve(ink[y0:y1, x0:x1].mean(axis=1), kernel, mode="same")
    span = _runs(rows, 0.5, min_len)
    if span is None:
        return None
    y0, y1 = y0 + span[0], y0 + span[1]
    cols = np.convolve(ink[y0:y1, x0:x1].mean(axis=0), kernel, mode="same")
    span = _runs(cols, 0.5, min_len)
    if span is None:
        return None
    return [x0 + span[0], y0, x0 + span[1], y1]


def _image_like(grey: npt.NDArray[np.uint8], box: list[int], background: float) -> bool:
    x0, y0, x1, y1 = box
    crop = grey[y0:y1, x0:x1]
    if crop.size == 0:
        return False
    ink = float(np.mean(crop < background - 25))
    spread = float(np.std(crop))
    edges = float(np.mean(cv2.Canny(crop, 50, 150) > 0))
    return ink >= 0.35 and spread >= 12 and edges >= 0.005


def find_regions(image: Image, text_boxes: list[BBox], settings: ReadingSettings) -> list[BBox]:
    """Boxes (page-image pixels) of the figures on a page, in reading order (top to bottom, left to right)."""
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        return []
    scale = min(1.0, _WORK_SIDE / max(h, w))
    grey_full = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    grey = np.asarray(
        cv2.resize(grey_full, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if scale < 1
        else grey_full,
        dtype=np.uint8,
    )
    gh, gw = grey.shape
    background = float(np.percentile(grey, 90))
    ink = (grey < background - 25).astype(np.uint8)
    for x0, y0, x1, y1 in text_boxes:
        # Text lines are blanked; a line inside a figure (an annotation) leaves a hole that closing fills.
        ink[max(0, int(y0 * scale)) : int(y1 * scale) + 1, max(0, int(x0 * scale)) : int(x1 * scale) + 1] = 0
    k = max(3, round(0.006 * max(gh, gw)))
    closed = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    min_side = settings.min_figure_side * scale
    boxes: list[list[int]] = []
    for label in range(1, count):
        x, y, bw, bh, _area = (int(v) for v in stats[label])
        if min(bw, bh) < min_side * 0.5:  # panels of a montage may be small; checked again after merging
            continue
        boxes.append([x, y, x + bw, y + bh])
    window = max(3, round(0.02 * max(gh, gw)))
    trimmed = [_trim(ink, b, window, min_side * 0.5) for b in boxes]
    boxes = [b for b in trimmed if b is not None and _image_like(grey, b, background)]
    boxes = _merge_panels(boxes, gap=0.03 * max(gh, gw))
    out: list[BBox] = []
    for x0, y0, x1, y1 in boxes:
        if min(x1 - x0, y1 - y0) < min_side:
            continue
        if (x1 - x0) * (y1 - y0) >= settings.scan_image_coverage * gw * gh:
            continue  # the page itself (a photographed page, a frame), not a figure on it
        out.append((x0 / scale, y0 / scale, min(w, x1 / scale), min(h, y1 / scale)))
    out.sort(key=lambda b: (round(b[1] / max(1.0, 0.05 * h)), b[0]))
    return out[:MAX_REGIONS]


def crop(image: Image, box: BBox) -> Region:
    """The figure's pixels as PNG."""
    x0, y0, x1, y1 = (round(v) for v in box)
    pixels = np.ascontiguousarray(image[max(0, y0) : y1, max(0, x0) : x1])
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    data = buf.getvalue()
    return Region(
        bbox=(float(x0), float(y0), float(x1), float(y1)),
        png=data,
        sha256=hashlib.sha256(data).hexdigest(),
        width=int(pixels.shape[1]),
        height=int(pixels.shape[0]),
    )
