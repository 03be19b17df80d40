"""Matching a report's embedded figure to the DICOM instance it was made from.

A figure in a PDF report is usually a screenshot of a viewer: the instance rendered with some window, cropped,
rescaled, perhaps with burnt-in annotations, then JPEG-compressed. What survives all of that is the spatial
structure, up to a monotonic change of grey levels (a different window is a monotonic map, clipped). So both
sides are compared after histogram equalisation (rank normalisation) and as gradient magnitudes, with
normalised cross-correlation over a range of crop scales and positions (``cv2.matchTemplate``).

Equalisation cannot undo clipping, though: a lung-window rendering and a mediastinal-window screenshot of the
same slice saturate different tissue, and a smoothed thick slice shown under the figure's window can then
look more like the figure than its true source. So an instance may come as a :class:`Rendering` that carries
its stored values (:class:`~gateway.imaging.GreyValues`, after the Modality LUT), which are also shown under
alternative windows (:mod:`gateway.align.windows`); each instance keeps its best score over all windows.

Two passes keep a 1,000-image study fast: a coarse pass at 32 px over every instance and window shortlists
candidates (and the best few of every series, so that one series cannot crowd out another); then a fine pass
at 128 px over the shortlist decides, trying every window on a coarse grid of scales and refining the best.
A match is accepted only when its score clears ``min_score`` and beats the runner-up by ``margin``:
look-alike neighbours (adjacent slices, or a thick slice averaged from the source) then give no link rather
than a wrong one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from gateway.align.windows import Window
from gateway.imaging import GreyValues

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

COARSE = 32
FINE = 128
COARSE_SCALES = (1.0, 0.8, 0.62)  # down to the smallest crops FINE_SCALES try
FINE_SCALES = tuple(float(s) for s in np.round(np.arange(1.0, 0.44, -0.05), 3))
#: Every window of a candidate is tried on this sub-grid; only the best window gets all of ``FINE_SCALES``.
WINDOW_SCALES = FINE_SCALES[::2]
#: The best candidates of each series join the shortlist, however their series ranks overall.
PER_SERIES = 2
#: The best candidates under each alternative window join the shortlist.
PER_WINDOW = 3


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
class Rendering:
    """An instance as its own VOI shows it and, if grey, its stored values to show under other windows.

    ``values`` may be smaller than ``image`` (the fine level of 128 px is all the matcher uses them at).
    """

    image: npt.NDArray[np.generic]
    values: GreyValues | None = None


@dataclass(frozen=True)
class _Prepared:
    coarse: tuple[F32, F32]
    fine: tuple[F32, F32]


def _prepare(grey: U8) -> _Prepared:
    fine_grey = _resize(grey, _fit(grey.shape[:2], FINE))
    coarse_grey = _resize(grey, _fit(grey.shape[:2], COARSE))
    return _Prepared(_normalise(coarse_grey), _normalise(fine_grey))


def _level_like(grey: U8, like: tuple[F32, F32]) -> tuple[F32, F32]:
    """``grey`` normalised at exactly the shape of ``like``, so that both share the figure's templates."""
    h, w = like[0].shape[:2]
    return _normalise(_resize(grey, (w, h)))


@dataclass(frozen=True)
class FigureMatch:
    """The best instance for a figure, its score, and the runner-up's."""

    sop_instance_uid: str | None
    score: float
    runner_up: str | None
    runner_up_score: float
    scale: float
    window: Window | None = None  # None: the instance's own rendering won

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


Templates = dict[tuple[int, int, float], tuple[F32, F32] | None]


def _score(
    level: tuple[F32, F32], scales: Sequence[float], templates: Templates, figure: U8
) -> tuple[float, float]:
    """Best (score, scale) of ``figure`` inside one prepared level of an instance."""
    eq, grad = level
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


class FigureIndex:
    """Instances prepared once for matching any number of figures against them.

    ``windows`` gives, per SOP Instance UID, the alternative windows to show it under when it is shortlisted
    (only instances given as a :class:`Rendering` with values can be); ``series`` maps an instance to its
    series, for the per-series part of the shortlist; ``neighbours`` lists an instance's adjacent slices.
    """

    def __init__(
        self,
        images: Mapping[str, npt.NDArray[np.generic] | Rendering],
        *,
        windows: Mapping[str, Sequence[Window]] | None = None,
        series: Mapping[str, str] | None = None,
        neighbours: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._uids = list(images)
        renderings = [r if isinstance(r, Rendering) else Rendering(r) for r in images.values()]
        self._prepared = [_prepare(to_grey(r.image)) for r in renderings]
        self._values = [r.values for r in renderings]
        windows = windows or {}
        self._windows = [
            tuple(windows.get(u, ())) if v is not None else ()
            for u, v in zip(self._uids, self._values, strict=True)
        ]
        groups: dict[str, list[int]] = {}
        for i, uid in enumerate(self._uids):
            groups.setdefault((series or {}).get(uid, ""), []).append(i)
        self._groups = [np.asarray(g) for g in groups.values()] if series else []
        position = {u: i for i, u in enumerate(self._uids)}
        self._neighbours = [
            [position[n] for n in (neighbours or {}).get(u, ()) if n in position] for u in self._uids
        ]
        # Alternative renderings are prepared on first use and kept for the next figure.
        self._alternatives: dict[tuple[int, Window], U8 | None] = {}
        self._alternatives_coarse: dict[tuple[int, Window], tuple[F32, F32] | None] = {}
        self._alternatives_fine: dict[tuple[int, Window], tuple[F32, F32]] = {}

    def __len__(self) -> int:
        return len(self._uids)

    def _alternative(self, idx: int, window: Window) -> U8 | None:
        key = (idx, window)
        if key not in self._alternatives:
            values = self._values[idx]
            grey = values.windowed(*window) if values is not None else None
            # A window that shows the instance as (nearly) one grey says nothing about it.
            self._alternatives[key] = grey if grey is not None and float(grey.std()) >= 2.0 else None
        return self._alternatives[key]

    def _fine_levels(self, idx: int) -> list[tuple[Window | None, tuple[F32, F32]]]:
        """The instance's own fine level (window None) and its fine levels under the alternative windows."""
        levels: list[tuple[Window | None, tuple[F32, F32]]] = [(None, self._prepared[idx].fine)]
        for window in self._windows[idx]:
            key = (idx, window)
            if key not in self._alternatives_fine:
                grey = self._alternative(idx, window)
                if grey is None:
                    continue
                self._alternatives_fine[key] = _level_like(grey, self._prepared[idx].fine)
            levels.append((window, self._alternatives_fine[key]))
        return levels

    def _coarse(self, templates: Templates, figure: U8) -> dict[Window | None, npt.NDArray[np.float64]]:
        """Coarse scores of every instance, per window (None: its own rendering; NaN: not shown so)."""
        out: dict[Window | None, npt.NDArray[np.float64]] = {}
        for idx, prepared in enumerate(self._prepared):
            levels: list[tuple[Window | None, tuple[F32, F32]]] = [(None, prepared.coarse)]
            for window in self._windows[idx]:
                key = (idx, window)
                if key not in self._alternatives_coarse:
                    grey = self._alternative(idx, window)
                    self._alternatives_coarse[key] = (
                        None if grey is None else _level_like(grey, prepared.coarse)
                    )
                alternative = self._alternatives_coarse[key]
                if alternative is not None:
                    levels.append((window, alternative))
            for shown, level in levels:
                if shown not in out:
                    out[shown] = np.full(len(self._uids), np.nan)
                out[shown][idx] = _score(level, COARSE_SCALES, templates, figure)[0]
        return out

    def _shortlist(self, coarse: dict[Window | None, npt.NDArray[np.float64]], shortlist: int) -> list[int]:
        own = coarse[None]
        order = [int(i) for i in np.argsort(-own)[: max(2, shortlist)]]

        def add(indices: npt.NDArray[np.intp]) -> None:
            order.extend(int(i) for i in indices if int(i) not in order)

        for group in self._groups:
            add(group[np.argsort(-own[group])[:PER_SERIES]])
        # Each other window brings its own few best, rather than a maximum over windows: a window that
        # shows everything alike would otherwise crowd the own rendering's candidates out.
        for window, scores in coarse.items():
            if window is not None:
                add(np.argsort(-np.nan_to_num(scores, nan=-2.0))[:PER_WINDOW])
        return order

    def _fine(self, idx: int, templates: Templates, figure: U8) -> tuple[float, float, Window | None]:
        """Best (score, scale, window) of one candidate over its own rendering and its alternative windows."""
        levels = self._fine_levels(idx)
        window: Window | None = None
        level = levels[0][1]
        if len(levels) == 1:
            score, scale = _score(level, FINE_SCALES, templates, figure)
        else:
            tried = [(*_score(lv, WINDOW_SCALES, templates, figure), n) for n, (_, lv) in enumerate(levels)]
            score, scale, best = max(tried)
            window, level = levels[best]
            rest = tuple(s for s in FINE_SCALES if s not in WINDOW_SCALES)
            score2, scale2 = _score(level, rest, templates, figure)
            if score2 > score:
                score, scale = score2, scale2
        # Refine around the best scale: crops rarely fall on the grid.
        near = tuple(s for s in (scale - 0.025, scale + 0.025) if 0.3 < s <= 1.0)
        if near:
            score2, scale2 = _score(level, near, templates, figure)
            if score2 > score:
                score, scale = score2, scale2
        return score, scale, window

    def match(self, figure: npt.NDArray[np.generic], *, shortlist: int = 8) -> FigureMatch:
        """Find the instance ``figure`` was made from (see the module docstring for how)."""
        if not self._uids:
            return FigureMatch(None, -1.0, None, -1.0, 1.0)
        grey = to_grey(figure)
        # Work from a figure no larger than the fine level needs; big screenshots only cost time.
        if max(grey.shape[:2]) > 2 * FINE:
            grey = _resize(grey, _fit(grey.shape[:2], 2 * FINE))
        # Templates depend only on the target shape and scale; most instances of a series share a shape.
        coarse_t: Templates = {}
        fine_t: Templates = {}
        scored: dict[int, tuple[float, float, int, Window | None]] = {}
        for i in self._shortlist(self._coarse(coarse_t, grey), shortlist):
            score, scale, window = self._fine(i, fine_t, grey)
            scored[i] = (score, scale, i, window)
        fine = sorted(scored.values(), key=lambda f: (f[0], -f[2]), reverse=True)
        # The margin rule needs the best one's neighbours (adjacent slices) scored, as they are its natural
        # look-alikes; a chance match elsewhere in the study would otherwise face no close rival.
        for _ in range(3):
            missing = [n for n in self._neighbours[fine[0][2]] if n not in scored]
            if not missing:
                break
            for i in missing:
                score, scale, window = self._fine(i, fine_t, grey)
                scored[i] = (score, scale, i, window)
            fine = sorted(scored.values(), key=lambda f: (f[0], -f[2]), reverse=True)
        best = fine[0]
        second = fine[1] if len(fine) > 1 else (-1.0, 1.0, -1, None)
        return FigureMatch(
            self._uids[best[2]],
            best[0],
            self._uids[second[2]] if second[2] >= 0 else None,
            second[0],
            best[1],
            best[3],
        )
