"""Matching a report's embedded figure to the DICOM instance it was made from.

A figure in a PDF report is usually a screenshot of a viewer: the instance rendered with some window, cropped,
rescaled, perhaps with burnt-in annotations, then JPEG-compressed. What survives all of that is the spatial
structure, up to a monotonic change of grey levels (a different window is a monotonic map, clipped). So both
sides are compared after histogram equalisation (rank normalisation) and as gradient magnitudes, with
normalised cross-correlation over a range of crop scales and positions (``cv2.matchTemplate``).

Two passes keep a 1,000-image study fast: a coarse pass at 32 px over every instance shortlists candidates,
then a fine pass at 128 px over the shortlist with finer scales decides. A match is accepted only when its
score clears ``min_score`` and beats the runner-up by ``margin``: look-alike neighbours (adjacent slices) then
give no link rather than a wrong one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

COARSE = 32
FINE = 128
COARSE_SCALES = (1.0, 0.8, 0.62)
FINE_SCALES = tuple(float(s) for s in np.round(np.arange(1.0, 0.44, -0.05), 3))


def to_grey(image: npt.NDArray[np.generic]) -> U8:
    """8-bit grey from grey, RGB or RGBA input."""
    arr = np.asarray(image)
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr = arr[:, :, :3]
        arr = cv2.cvtColor(np.ascontiguousarray(arr.astype(np.uint8)), cv2.COLOR_RGB2GRAY)
    if arr.dtype != np.uint8:
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr.astype(np.float64) - lo) * (255.0 / max(hi - lo, 1e-9))).astype(np.uint8)
    return cast(U8, np.ascontiguousarray(arr))


def _resize(grey: U8, size: tuple[int, int]) -> U8:
    return cast(U8, cv2.resize(grey, size, interpolation=cv2.INTER_AREA))


def _fit(shape: tuple[int, int], longest: int) -> tuple[int, int]:
    h, w = shape
    k = longest / max(h, w)
    return max(1, round(w * k)), max(1, round(h * k))


def _normalise(grey: U8) -> tuple[F32, F32]:
    """Equalised intensity and gradient magnitude, both lightly blurred against JPEG noise and text."""
    eq = cv2.equalizeHist(grey)
    eq_f = cv2.GaussianBlur(eq, (3, 3), 0).astype(np.float32)
    gx = cv2.Sobel(eq_f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(eq_f, cv2.CV_32F, 0, 1, ksize=3)
    grad = cv2.GaussianBlur(cv2.magnitude(gx, gy), (3, 3), 0)
    return eq_f, cast(F32, grad)


@dataclass(frozen=True)
class _Prepared:
    coarse: tuple[F32, F32]
    fine: tuple[F32, F32]
    fine_grey: U8


def _prepare(grey: U8) -> _Prepared:
    fine_grey = _resize(grey, _fit(grey.shape[:2], FINE))
    coarse_grey = _resize(grey, _fit(grey.shape[:2], COARSE))
    return _Prepared(_normalise(coarse_grey), _normalise(fine_grey), fine_grey)


@dataclass(frozen=True)
class FigureMatch:
    """The best instance for a figure, its score, and the runner-up's."""

    sop_instance_uid: str | None
    score: float
    runner_up: str | None
    runner_up_score: float
    scale: float

    @property
    def margin(self) -> float:
        return self.score - self.runner_up_score


def _ncc(image: F32, template: F32) -> float:
    if template.shape[0] > image.shape[0] or template.shape[1] > image.shape[1]:
        return -1.0
    res = cv2.matchTemplate(image, template, cv2.TM_CCOEFF_NORMED)
    value = float(res.max())
    return value if np.isfinite(value) else -1.0


def _template(figure_grey: U8, target: tuple[int, int], scale: float) -> tuple[F32, F32] | None:
    """The figure resized so that, placed inside an image of ``target`` (h, w), it spans ``scale`` of it."""
    th, tw = target
    fh, fw = figure_grey.shape[:2]
    k = scale * min(tw / fw, th / fh)
    w, h = round(fw * k), round(fh * k)
    if w < 6 or h < 6:
        return None
    small = _resize(figure_grey, (min(w, tw), min(h, th)))
    eq, grad = _normalise(small)
    if float(eq.std()) < 1e-3 or float(grad.std()) < 1e-3:
        return None  # a flat template correlates with nothing
    return eq, grad


class FigureIndex:
    """Instances prepared once for matching any number of figures against them."""

    def __init__(self, images: Mapping[str, npt.NDArray[np.generic]]) -> None:
        self._uids = list(images)
        self._prepared = [_prepare(to_grey(images[u])) for u in self._uids]

    def __len__(self) -> int:
        return len(self._uids)

    def _score(
        self,
        level: str,
        idx: int,
        scales: tuple[float, ...],
        templates: dict[tuple[int, int, float], tuple[F32, F32] | None],
        figure: U8,
    ) -> tuple[float, float]:
        prep = self._prepared[idx]
        eq, grad = prep.coarse if level == "coarse" else prep.fine
        best, best_scale = -1.0, 1.0
        for scale in scales:
            key = (eq.shape[0], eq.shape[1], scale)
            if key not in templates:
                templates[key] = _template(figure, (eq.shape[0], eq.shape[1]), scale)
            tpl = templates[key]
            if tpl is None:
                continue
            score = 0.5 * _ncc(eq, tpl[0]) + 0.5 * _ncc(grad, tpl[1])
            if score > best:
                best, best_scale = score, scale
        return best, best_scale

    def match(self, figure: npt.NDArray[np.generic], *, shortlist: int = 8) -> FigureMatch:
        """Find the instance ``figure`` was made from (see the module docstring for how)."""
        if not self._uids:
            return FigureMatch(None, -1.0, None, -1.0, 1.0)
        grey = to_grey(figure)
        # Work from a figure no larger than the fine level needs; big screenshots only cost time.
        if max(grey.shape[:2]) > 2 * FINE:
            grey = _resize(grey, _fit(grey.shape[:2], 2 * FINE))
        # Templates depend only on the target shape and scale; most instances of a series share a shape.
        coarse_t: dict[tuple[int, int, float], tuple[F32, F32] | None] = {}
        fine_t: dict[tuple[int, int, float], tuple[F32, F32] | None] = {}
        coarse = [self._score("coarse", i, COARSE_SCALES, coarse_t, grey)[0] for i in range(len(self._uids))]
        order = np.argsort(-np.asarray(coarse))[: max(2, shortlist)]
        fine: list[tuple[float, float, int]] = []
        for i in order:
            score, scale = self._score("fine", int(i), FINE_SCALES, fine_t, grey)
            # Refine around the best scale: crops rarely fall on the grid.
            near = tuple(s for s in (scale - 0.025, scale + 0.025) if 0.3 < s <= 1.0)
            if near:
                score2, scale2 = self._score("fine", int(i), near, fine_t, grey)
                if score2 > score:
                    score, scale = score2, scale2
            fine.append((score, scale, int(i)))
        fine.sort(reverse=True)
        best = fine[0]
        second = fine[1] if len(fine) > 1 else (-1.0, 1.0, -1)
        return FigureMatch(
            self._uids[best[2]],
            best[0],
            self._uids[second[2]] if second[2] >= 0 else None,
            second[0],
            best[1],
        )
