"""Splitting a montage figure into its panels.

Reports often show two or four images side by side under one caption (图2A / 图2B, "Figure 3, left and
right"). Viewers separate the panels by a gutter or a border: a band of columns (or rows) that is flat black
or white from edge to edge, with image on both sides. A single image has no such band in its middle half:
even a CT slice's black air stops at the body, and soft tissue is grey, not black or white. So a figure is
split along such bands, columns first and then rows within each part, and each panel is trimmed of flat
borders. Panels come in reading
order (left to right, then top to bottom), which is the order of the letters A, B, C, D.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.align.figures import to_grey

Box = tuple[int, int, int, int]  # x0, y0, x1, y1

#: A separator line varies by less than this along its length (8-bit grey, 2nd to 98th percentile)...
FLAT = 12.0
#: ...and is dark or bright: a viewer's gutter or border, not a stretch of soft tissue.
DARK, BRIGHT = 30.0, 240.0
#: Panels of one montage have about one size: the smaller of two halves is at least this share of the other.
EVEN = 0.6
#: Separators are looked for in this middle share of the figure's width or height.
CENTRE = (0.25, 0.75)
#: The smallest panel, as a share of the figure's side and in pixels.
MIN_SHARE = 0.2
MIN_SIDE = 32


def _separators(lines: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Which lines (rows of ``lines``, each a column or row of the image) are gutters or borders."""
    lo, hi = np.percentile(lines, [2, 98], axis=1)
    mean = lines.mean(axis=1)
    return np.asarray(((hi - lo) <= FLAT) & ((mean <= DARK) | (mean >= BRIGHT)))


def _flat_runs(flat: npt.NDArray[np.bool_], lo: int, hi: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for i in range(lo, hi):
        if flat[i] and start is None:
            start = i
        elif not flat[i] and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, hi))
    return runs


def _splits(grey: npt.NDArray[np.uint8], axis: int) -> list[tuple[int, int]]:
    """Separator bands across ``axis`` (1: vertical bands between columns; 0: horizontal ones)."""
    arr = grey.astype(np.float64)
    flat = _separators(arr.T if axis == 1 else arr)
    size = arr.shape[1] if axis == 1 else arr.shape[0]
    lo, hi = int(size * CENTRE[0]), int(size * CENTRE[1]) + 1
    return _flat_runs(flat, lo, min(hi, size))


def _trim(grey: npt.NDArray[np.uint8], box: Box) -> Box | None:
    """The box without its flat borders; None if nothing but flat grey is left (no panel there)."""
    x0, y0, x1, y1 = box
    part = grey[y0:y1, x0:x1].astype(np.float64)
    if part.size == 0:
        return None
    cols = np.nonzero(~_separators(part.T))[0]
    rows = np.nonzero(~_separators(part))[0]
    if len(cols) == 0 or len(rows) == 0:
        return None
    return (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)


def _cut(grey: npt.NDArray[np.uint8], box: Box, axis: int) -> list[Box]:
    x0, y0, x1, y1 = box
    part = grey[y0:y1, x0:x1]
    bands = _splits(part, axis)
    if not bands:
        return [box]
    # The band nearest the middle splits the part; more panels come from cutting the halves again.
    size = part.shape[1] if axis == 1 else part.shape[0]
    start, end = min(bands, key=lambda b: abs((b[0] + b[1]) / 2 - size / 2))
    if min(start, size - end) < EVEN * max(start, size - end):
        return [box]
    if axis == 1:
        halves = [(x0, y0, x0 + start, y1), (x0 + end, y0, x1, y1)]
    else:
        halves = [(x0, y0, x1, y0 + start), (x0, y0 + end, x1, y1)]
    return halves


def split_panels(image: npt.NDArray[np.generic]) -> list[Box]:
    """The panels of a montage in reading order, or an empty list for a single image."""
    grey = to_grey(np.asarray(image))
    h, w = grey.shape
    boxes: list[Box] = []
    for column in _cut(grey, (0, 0, w, h), axis=1):
        boxes.extend(_cut(grey, column, axis=0))
    if len(boxes) < 2:
        return []
    trimmed: list[Box] = []
    for box in boxes:
        kept = _trim(grey, box)
        if kept is None:
            return []  # one side is empty background: a crop beside the body, not a montage
        trimmed.append(kept)
    for x0, y0, x1, y1 in trimmed:
        if x1 - x0 < max(MIN_SIDE, MIN_SHARE * w) or y1 - y0 < max(MIN_SIDE, MIN_SHARE * h):
            return []
    # Reading order: rows of panels top to bottom, left to right within a row.
    trimmed.sort(key=lambda b: (round(b[1] / max(1, h) * 4), b[0]))
    return trimmed
