"""Finding the instances a report's embedded figure may have been made from: a ranked shortlist.

A figure in a report is usually a screenshot of a viewer: the instance rendered with some window, cropped
(down to 40 % of the image), rescaled, perhaps turned a few degrees, with burnt-in text and coloured overlays
(arrows, ROI circles, measurement lines), then JPEG-compressed. What survives all of that is the spatial
structure, up to a monotonic change of grey levels (a window is a monotonic map, clipped). So both sides are
compared after histogram equalisation (rank normalisation) and as gradient magnitudes, with normalised
cross-correlation over crop scales and positions. Saturated colour pixels are overlays, not image: they are
masked out and filled from their surroundings before anything is compared (:func:`figure_grey`).

Equalisation cannot undo clipping, though: a lung-window rendering and a mediastinal-window screenshot of the
same slice saturate different tissue. So an instance may come as a :class:`Rendering` that carries its stored
values (:class:`~gateway.imaging.GreyValues`, after the Modality LUT), shown under alternative windows
(:mod:`gateway.align.windows`) at the fine level.

Three passes keep a 2,000-image study fast:

1. **coarse** (32 px): every instance, as its own rendering and, when it has stored values, as the rank
   transform of those values (which no window changes), scored in one batched FFT correlation per template;
2. **fine** (128 px): the shortlist, under every window at the coarse scale, then the best window over a
   sweep of scales around it;
3. the caller (:mod:`gateway.align.verify`) registers the best few at the figure's own resolution.

This module only ranks; deciding between adjacent slices, twins and decoys is the aligner's job.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
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
COARSE_SCALES = (1.0, 0.8, 0.62, 0.45)
#: Crops down to 40 % of the image are searched for.
FINE_SCALES = tuple(float(s) for s in np.round(np.arange(1.0, 0.34, -0.05), 3))
#: How far around the coarse scale the fine pass sweeps.
SWEEP = 0.15
#: The best candidates of each series join the shortlist, however their series ranks overall.
PER_SERIES = 2
#: A pixel whose channels differ by more than this is a coloured overlay, not image.
SATURATION = 40


def to_grey(image: npt.NDArray[np.generic]) -> U8:
    """8-bit grey from grey, RGB or RGBA input."""
    arr = np.asarray(image)
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr = arr[:, :, :3]
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
        else:
            arr = cv2.cvtColor(np.ascontiguousarray(arr.astype(np.uint8)), cv2.COLOR_RGB2GRAY)
    if arr.dtype != np.uint8:
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr.astype(np.float64) - lo) * (255.0 / max(hi - lo, 1e-9))).astype(np.uint8)
    return cast(U8, np.ascontiguousarray(arr))


def figure_grey(image: npt.NDArray[np.generic]) -> tuple[U8, U8]:
    """The figure's grey content and its mask (255 = image, 0 = coloured overlay).

    Coloured overlays are found by saturation (channel spread), widened by two pixels for their JPEG halo,
    and filled in from their surroundings, so that an arrow or an ROI circle does not pull the match.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] >= 3:
        rgb = arr[:, :, :3].astype(np.int16)
        spread = rgb.max(axis=2) - rgb.min(axis=2)
        overlay = (spread > SATURATION).astype(np.uint8)
        grey = to_grey(arr)
        if overlay.any():
            overlay = cv2.dilate(overlay, np.ones((5, 5), np.uint8))
            if overlay.mean() < 0.5:
                grey = cast(U8, cv2.inpaint(grey, overlay, 3, cv2.INPAINT_TELEA))
    else:
        grey = to_grey(arr)
        overlay = np.zeros(grey.shape, np.uint8)
    return grey, cast(U8, np.where(overlay > 0, 0, 255).astype(np.uint8))


def resize(grey: npt.NDArray[np.generic], size: tuple[int, int]) -> npt.NDArray[np.generic]:
    """Resize to (width, height) with area averaging when shrinking."""
    w, h = size
    shrink = w <= grey.shape[1] and h <= grey.shape[0]
    method = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(grey, (w, h), interpolation=method))  # type: ignore[arg-type]


def fit(shape: tuple[int, ...], longest: int) -> tuple[int, int]:
    """(width, height) of ``shape`` scaled so its longer side is ``longest``."""
    h, w = shape[0], shape[1]
    k = longest / max(h, w)
    return max(1, round(w * k)), max(1, round(h * k))


def normalise(grey: U8) -> tuple[F32, F32]:
    """Equalised intensity and gradient magnitude, both lightly blurred against JPEG noise and text."""
    eq = cv2.equalizeHist(grey)
    eq_f = cv2.GaussianBlur(eq, (3, 3), 0).astype(np.float32)
    gx = cv2.Sobel(eq_f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(eq_f, cv2.CV_32F, 0, 1, ksize=3)
    grad = cv2.GaussianBlur(cv2.magnitude(gx, gy), (3, 3), 0)
    return eq_f, cast(F32, grad)


def rank_values(values: npt.NDArray[np.floating]) -> U8:
    """Stored values as 8-bit ranks: the same whatever window the figure was captured under."""
    flat = values.ravel()
    order = np.argsort(flat, kind="stable")
    ranks = np.empty(flat.size, dtype=np.float64)
    ranks[order] = np.arange(flat.size)
    return cast(U8, (ranks * (255.0 / max(1, flat.size - 1))).astype(np.uint8).reshape(values.shape))


@dataclass(frozen=True)
class Rendering:
    """An instance as its own VOI shows it and, if grey, its stored values to show under other windows.

    ``values`` may be smaller than ``image``: the matcher uses them at its fine level (128 px).
    """

    image: npt.NDArray[np.generic]
    values: GreyValues | None = None


@dataclass(frozen=True)
class Candidate:
    """One instance's best placement of the figure: score, crop scale, window, and where (fractions)."""

    sop_instance_uid: str
    score: float
    scale: float
    window: Window | None  # None: the instance's own rendering
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the instance's frame


@dataclass(frozen=True)
class FigureMatch:
    """The ranked candidates for a figure, best first."""

    candidates: tuple[Candidate, ...] = field(default=())

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def sop_instance_uid(self) -> str | None:
        return self.candidates[0].sop_instance_uid if self.candidates else None

    @property
    def score(self) -> float:
        return self.candidates[0].score if self.candidates else -1.0

    @property
    def runner_up(self) -> str | None:
        return self.candidates[1].sop_instance_uid if len(self.candidates) > 1 else None

    @property
    def runner_up_score(self) -> float:
        return self.candidates[1].score if len(self.candidates) > 1 else -1.0

    @property
    def margin(self) -> float:
        return self.score - self.runner_up_score

    @property
    def window(self) -> Window | None:
        return self.candidates[0].window if self.candidates else None

    @property
    def scale(self) -> float:
        return self.candidates[0].scale if self.candidates else 1.0


def _template(figure: U8, target: tuple[int, int], scale: float) -> tuple[F32, F32] | None:
    """The figure resized so that, placed inside an image of ``target`` (h, w), it spans ``scale`` of it."""
    th, tw = target
    fh, fw = figure.shape[:2]
    k = scale * min(tw / fw, th / fh)
    w, h = min(round(fw * k), tw), min(round(fh * k), th)
    if w < 6 or h < 6:
        return None
    eq, grad = normalise(cast(U8, resize(figure, (w, h))))
    if float(eq.std()) < 1e-3 or float(grad.std()) < 1e-3:
        return None  # a flat template correlates with nothing
    return eq, grad


Templates = dict[tuple[int, int, float], tuple[F32, F32] | None]


def _best_placement(level: tuple[F32, F32], template: tuple[F32, F32]) -> tuple[float, tuple[int, int]]:
    """Best (score, (x, y)) of a template inside a level: the mean of intensity and gradient correlation."""
    eq, grad = level
    if template[0].shape[0] > eq.shape[0] or template[0].shape[1] > eq.shape[1]:
        return -1.0, (0, 0)
    res = np.asarray(cv2.matchTemplate(eq, template[0], cv2.TM_CCOEFF_NORMED), dtype=np.float32)
    res = res + np.asarray(cv2.matchTemplate(grad, template[1], cv2.TM_CCOEFF_NORMED), dtype=np.float32)
    res = np.nan_to_num(res, nan=-2.0, posinf=-2.0, neginf=-2.0)
    _, value, _, loc = cv2.minMaxLoc(res)
    return 0.5 * float(value), (int(loc[0]), int(loc[1]))


class _Batch:
    """Same-shape coarse levels of many instances, correlated with a template in one FFT pass.

    Normalised cross-correlation of a zero-mean template T with every window of an image X is
    corr(X, T) / (|T| · std_window(X) · √n); the correlation comes from one batched FFT and the window sums
    from integral images, so a template costs one pass over the whole batch, not one call per instance.
    """

    def __init__(self, levels: Sequence[F32]) -> None:
        stack = np.stack(levels).astype(np.float32)  # single precision halves the FFT's cost
        self.shape = stack.shape[1:]
        self._fft = np.fft.rfft2(stack)
        stack = stack.astype(np.float64)  # window sums of squares need double precision
        self._ii = np.zeros((stack.shape[0], stack.shape[1] + 1, stack.shape[2] + 1))
        self._ii[:, 1:, 1:] = stack.cumsum(1).cumsum(2)
        self._ii2 = np.zeros_like(self._ii)
        self._ii2[:, 1:, 1:] = (stack * stack).cumsum(1).cumsum(2)

    def correlate(self, template: F32) -> npt.NDArray[np.float64]:
        """NCC maps of the template over every level: shape (n, H - th + 1, W - tw + 1)."""
        h, w = self.shape
        th, tw = template.shape
        t = template.astype(np.float32)
        t = t - t.mean()
        norm = float(np.sqrt((t * t).sum()))
        n_out = (h - th + 1, w - tw + 1)
        if norm < 1e-9:
            return np.full((self._fft.shape[0], *n_out), -1.0)
        padded = np.zeros((h, w), dtype=np.float32)
        padded[:th, :tw] = t
        corr = np.fft.irfft2(self._fft * np.conj(np.fft.rfft2(padded)), s=(h, w))[:, : n_out[0], : n_out[1]]
        ii, ii2 = self._ii, self._ii2
        ny, nx = n_out
        s1 = ii[:, th:, tw:] - ii[:, :ny, tw:] - ii[:, th:, :nx] + ii[:, :ny, :nx]
        s2 = ii2[:, th:, tw:] - ii2[:, :ny, tw:] - ii2[:, th:, :nx] + ii2[:, :ny, :nx]
        var = np.maximum(s2 - s1 * s1 / (th * tw), 0.0)
        denom = np.sqrt(var) * norm
        out = np.where(denom > 1e-6 * norm, corr / np.maximum(denom, 1e-12), 0.0)
        return np.clip(out, -1.0, 1.0)


@dataclass
class _Group:
    """Instances whose coarse levels share one shape: an intensity and a gradient batch per view."""

    shape: tuple[int, int]
    members: list[tuple[int, int]]  # (instance index, view)
    eq: _Batch
    grad: _Batch


class FigureIndex:
    """Instances prepared once for matching any number of figures against them.

    ``windows`` gives, per SOP Instance UID, the alternative windows to show it under at the fine level (only
    instances given as a :class:`Rendering` with values can be); ``series`` maps an instance to its series,
    for the per-series part of the shortlist. ``neighbours`` is accepted for callers of the earlier
    interface and ignored: adjacent slices are the aligner's business now (:mod:`gateway.align.geometry`).
    ``coarse`` limits the coarse pass to these instances (every few thin slices, say); the others are
    still scored when the caller asks for them.
    """

    def __init__(
        self,
        images: Mapping[str, npt.NDArray[np.generic] | Rendering],
        *,
        windows: Mapping[str, Sequence[Window]] | None = None,
        series: Mapping[str, str] | None = None,
        neighbours: Mapping[str, Sequence[str]] | None = None,
        coarse: Collection[str] | None = None,
    ) -> None:
        del neighbours
        self._uids = list(images)
        self._position = {u: i for i, u in enumerate(self._uids)}
        renderings = [r if isinstance(r, Rendering) else Rendering(r) for r in images.values()]
        self._images = [to_grey(r.image) for r in renderings]
        self._values = [r.values for r in renderings]
        windows = windows or {}
        self._windows = [
            tuple(windows.get(u, ())) if v is not None else ()
            for u, v in zip(self._uids, self._values, strict=True)
        ]
        self._series = [(series or {}).get(u, "") for u in self._uids]
        self._coarse_members = (
            [i for i, u in enumerate(self._uids) if u in set(coarse)] if coarse is not None else None
        )
        self._fine_own: dict[int, tuple[F32, F32]] = {}
        self._fine_alt: dict[tuple[int, Window], tuple[F32, F32] | None] = {}
        self._groups = self._coarse_groups()

    def __len__(self) -> int:
        return len(self._uids)

    @property
    def uids(self) -> list[str]:
        return list(self._uids)

    def _coarse_groups(self) -> list[_Group]:
        views: dict[tuple[int, int], list[tuple[int, int, tuple[F32, F32]]]] = {}
        taking = self._coarse_members if self._coarse_members is not None else range(len(self._uids))
        for idx in taking:
            image = self._images[idx]
            size = fit(image.shape, COARSE)
            values = self._values[idx]
            if values is None:
                own = normalise(cast(U8, resize(image, size)))
                views.setdefault(own[0].shape, []).append((idx, 0, own))
                continue
            # Stored values as ranks: no window clips them, so one view stands for every window.
            small = resize(values.values, size)
            ranked = rank_values(np.asarray(small, dtype=np.float32))
            if values.monochrome1:
                ranked = np.subtract(255, ranked, dtype=np.uint8)
            level = normalise(ranked)
            views.setdefault(level[0].shape, []).append((idx, 1, level))
        groups = []
        for shape, entries in views.items():
            groups.append(
                _Group(
                    shape=(int(shape[0]), int(shape[1])),
                    members=[(i, v) for i, v, _ in entries],
                    eq=_Batch([lv[0] for _, _, lv in entries]),
                    grad=_Batch([lv[1] for _, _, lv in entries]),
                )
            )
        return groups

    def _coarse(self, figure: U8) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Each instance's best coarse score (over its views and the coarse scales) and that scale."""
        best = np.full(len(self._uids), -2.0)
        scale_of = np.ones(len(self._uids))
        for group in self._groups:
            for scale in COARSE_SCALES:
                tpl = _template(figure, group.shape, scale)
                if tpl is None:
                    continue
                maps = 0.5 * (group.eq.correlate(tpl[0]) + group.grad.correlate(tpl[1]))
                scores = maps.reshape(maps.shape[0], -1).max(axis=1)
                for (idx, _view), score in zip(group.members, scores, strict=True):
                    if score > best[idx]:
                        best[idx] = float(score)
                        scale_of[idx] = scale
        return best, scale_of

    def _fine_level(self, idx: int, window: Window | None) -> tuple[F32, F32] | None:
        if window is None:
            if idx not in self._fine_own:
                image = self._images[idx]
                self._fine_own[idx] = normalise(cast(U8, resize(image, fit(image.shape, FINE))))
            return self._fine_own[idx]
        key = (idx, window)
        if key not in self._fine_alt:
            values = self._values[idx]
            grey = values.windowed(*window) if values is not None else None
            # A window that shows the instance as (nearly) one grey says nothing about it.
            if grey is None or float(grey.std()) < 2.0:
                self._fine_alt[key] = None
            else:
                own = self._fine_level(idx, None)
                assert own is not None
                h, w = own[0].shape
                self._fine_alt[key] = normalise(cast(U8, resize(grey, (w, h))))
        return self._fine_alt[key]

    def _fine(self, idx: int, figure: U8, near: float, templates: Templates) -> Candidate:
        """The candidate's best placement: each window at the coarse scale, then a sweep of the best."""

        def placed(level: tuple[F32, F32], scale: float) -> tuple[float, tuple[int, int], tuple[int, int]]:
            key = (level[0].shape[0], level[0].shape[1], scale)
            if key not in templates:
                templates[key] = _template(figure, (level[0].shape[0], level[0].shape[1]), scale)
            tpl = templates[key]
            if tpl is None:
                return -1.0, (0, 0), (0, 0)
            score, loc = _best_placement(level, tpl)
            return score, loc, (tpl[0].shape[1], tpl[0].shape[0])

        start = min(FINE_SCALES, key=lambda s: abs(s - near))
        options: list[tuple[Window | None, tuple[F32, F32]]] = []
        for window in (None, *self._windows[idx]):
            level = self._fine_level(idx, window)
            if level is not None:
                options.append((window, level))
        tried = [(placed(level, start)[0], n) for n, (_, level) in enumerate(options)]
        _, chosen = max(tried)
        window, level = options[chosen]
        sweep = [s for s in FINE_SCALES if abs(s - start) <= SWEEP + 1e-9]
        results = [(placed(level, s), s) for s in sweep]
        (score, loc, size), scale = max(results, key=lambda r: r[0][0])
        for s in (scale - 0.025, scale + 0.025):
            if 0.3 < s <= 1.0:
                result = placed(level, s)
                if result[0] > score:
                    (score, loc, size), scale = result, s
        h, w = level[0].shape
        box = (loc[0] / w, loc[1] / h, (loc[0] + size[0]) / w, (loc[1] + size[1]) / h)
        return Candidate(self._uids[idx], score, scale, window, box)

    def _medium(self, idx: int, figure: U8, near: float, templates: Templates) -> float:
        """A cheap fine-level score: the own rendering only, at the coarse scale and its two neighbours."""
        level = self._fine_level(idx, None)
        assert level is not None
        h, w = level[0].shape
        best = -1.0
        for scale in (near - 0.05, near, near + 0.05):
            if not 0.3 < scale <= 1.0:
                continue
            key = (h, w, round(scale, 3))
            if key not in templates:
                templates[key] = _template(figure, (h, w), scale)
            tpl = templates[key]
            if tpl is not None:
                best = max(best, _best_placement(level, tpl)[0])
        return best

    def match(
        self,
        figure: npt.NDArray[np.generic],
        *,
        shortlist: int = 8,
        related: Callable[[str], Collection[str]] | None = None,
        diverse: int = 24,
    ) -> FigureMatch:
        """Rank the instances ``figure`` may have been made from (see the module docstring for how).

        ``related`` names an instance's look-alikes by nature (its nearby slices): at most one of each such
        group enters the middle pass, so that a thin-slice series, whose slices all score alike at 32 px,
        cannot fill the shortlist with one region while the source's region waits further down.
        """
        if not self._uids:
            return FigureMatch()
        grey, _mask = figure_grey(np.asarray(figure))
        # Work from a figure no larger than the fine level needs; big screenshots only cost time.
        if max(grey.shape[:2]) > 2 * FINE:
            grey = cast(U8, resize(grey, fit(grey.shape, 2 * FINE)))
        coarse, scales = self._coarse(grey)
        ranked = [int(i) for i in np.argsort(-coarse)]
        picked: list[int] = []
        covered: set[str] = set()
        for i in ranked:
            uid = self._uids[i]
            if uid in covered:
                continue
            picked.append(i)
            if related is not None:
                covered.update(related(uid))
            if len(picked) >= max(diverse, shortlist):
                break
        by_series: dict[str, list[int]] = {}
        for i in ranked:
            members = by_series.setdefault(self._series[i], [])
            if len(members) < PER_SERIES:
                members.append(i)
        for members in by_series.values():
            picked.extend(i for i in members if i not in picked)
        templates: Templates = {}
        medium = {i: self._medium(i, grey, float(scales[i]), templates) for i in picked}
        order = sorted(picked, key=lambda i: -medium[i])[: max(2, shortlist)]
        scored = [self._fine(i, grey, float(scales[i]), templates) for i in order]
        scored.sort(key=lambda c: (-c.score, self._position[c.sop_instance_uid]))
        return FigureMatch(tuple(scored))

    def values(self, uid: str) -> GreyValues | None:
        idx = self._position.get(uid)
        return None if idx is None else self._values[idx]

    def image(self, uid: str) -> U8 | None:
        idx = self._position.get(uid)
        return None if idx is None else self._images[idx]
