"""Registering a figure onto a candidate instance at the figure's own resolution, and judging the fit.

The ranking of :mod:`gateway.align.figures` works at 128 px, where adjacent thin slices are nearly the same
image and a look-alike from another patient can score as high as the true source. Both questions are settled
here, at up to :data:`WORK` px:

- **Registration.** Starting from the placement the ranking found, the candidate (shown under the window that
  matched best, and equalised over the region the figure covers, which undoes the rest of the grey-level
  map) is registered onto the figure with an affine ECC (enhanced correlation coefficient) maximisation: crop,
  scale, a few degrees of rotation, to a fraction of a pixel. Coloured overlays are outside the mask.
- **Score.** The masked correlation of the registered images: adjacent slices that tied at 128 px differ in
  the small vessels and edges that this resolution still shows.
- **Fidelity.** The true source, once registered and shown under the figure's window, differs from the
  figure only by resampling, JPEG noise and burnt-in text; a look-alike leaves structured residuals. So the
  correlation is also taken after a low-pass filter that removes the noise but keeps structure: the true
  source stays close to 1, a look-alike does not, whatever its global similarity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from gateway.align.figures import U8, Candidate, figure_grey, fit, resize

F32 = npt.NDArray[np.float32]

#: The figure's longest side while registering.
WORK = 256
_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 1e-5)
#: Low-pass for the fidelity measure, in working pixels: wider than JPEG blocks' noise, narrower than anatomy.
FIDELITY_SIGMA = 2.0
#: The neighbourhood over which local residual energy is pooled, in working pixels (a small lesion).
LOCAL_SIGMA = 5.0


@dataclass(frozen=True)
class Registered:
    """A candidate registered onto the figure."""

    sop_instance_uid: str
    score: float  # masked correlation at the working resolution
    fidelity: float  # masked correlation after the low-pass: 1 for the true source, less for look-alikes
    converged: bool
    warp: tuple[tuple[float, ...], ...] | None = None  # figure pixels -> instance pixels (2 x 3)
    shape: tuple[int, int] | None = None  # the instance image it was registered on (h, w)
    #: Correlation of the fine detail left after the low-pass (noise grain, thin edges): the true source
    #: shares the very noise of the figure; a prior or another acquisition of the same anatomy does not.
    detail: float = -1.0
    #: The largest local residual of the low-passed fit, relative to the figure's contrast: a lesion that
    #: changed between a prior and this study leaves a blob here even when the rest of the image agrees.
    local: float = 1.0


def _masked_ncc(a: F32, b: F32, mask: npt.NDArray[np.bool_]) -> float:
    if int(mask.sum()) < 64:
        return -1.0
    x = a[mask].astype(np.float64)
    y = b[mask].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    denom = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denom) if denom > 1e-9 else -1.0


def _ecc(template: F32, source: F32, mask: npt.NDArray[np.uint8], warp: F32) -> npt.NDArray[np.float32]:
    """Affine ECC of ``source`` onto ``template``; masked where OpenCV can mask the template (5.x)."""
    if hasattr(cv2, "findTransformECCWithMask"):
        _, found = cv2.findTransformECCWithMask(
            template,
            source,
            mask,
            np.full(source.shape, 255, np.uint8),
            warp,
            cv2.MOTION_AFFINE,
            _CRITERIA,
            3,
        )
    else:  # overlays were filled in by figure_grey, so an unmasked run only loses a little
        _, found = cv2.findTransformECC(  # type: ignore[call-overload]
            template, source, warp, cv2.MOTION_AFFINE, _CRITERIA, None, 3
        )
    return np.asarray(found, dtype=np.float32)


def _fit_tone(source: F32, target: F32, valid: npt.NDArray[np.bool_], bins: int = 48) -> tuple[F32, F32]:
    """The monotonic map from ``source`` values to ``target`` greys that fits best (isotonic, binned), as
    (knots, greys) for :func:`numpy.interp`.

    A window is a monotonic map, clipped; fitting it, rather than equalising both sides, keeps what the
    figure clipped flat and a low-contrast figure's noise at its own small size.
    """
    x = source[valid]
    y = target[valid]
    lo, hi = (float(v) for v in np.percentile(x[:: max(1, x.size // 4096)], [0.5, 99.5]))
    edges = np.linspace(lo, hi + 1e-6, bins + 1)
    which = np.clip(((x - lo) * (bins / (hi + 1e-6 - lo))).astype(np.int64), 0, bins - 1)
    counts = np.bincount(which, minlength=bins).astype(np.float64)
    sums = np.bincount(which, weights=y, minlength=bins)
    # Pool adjacent violators over the occupied bins.
    blocks: list[list[float]] = []  # [sum, count, first bin, last bin]
    for b in np.nonzero(counts)[0]:
        blocks.append([float(sums[b]), float(counts[b]), float(b), float(b)])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s2, c2, _, l2 = blocks.pop()
            blocks[-1][0] += s2
            blocks[-1][1] += c2
            blocks[-1][3] = l2
    step = (edges[-1] - edges[0]) / bins
    knots = [edges[0] + (first + last + 1) / 2 * step for _, _, first, last in blocks]
    greys = [total / count for total, count, _, _ in blocks]
    if len(knots) == 1:
        knots, greys = [lo, hi + 1.0], [greys[0], greys[0]]
    return np.asarray(knots, np.float32), np.asarray(greys, np.float32)


def _shown(source: F32, tone: tuple[F32, F32]) -> F32:
    return np.interp(source, tone[0], tone[1]).astype(np.float32)


def _explained(target: F32, fitted: F32, valid: npt.NDArray[np.bool_]) -> float:
    """R² of ``fitted`` for ``target`` over ``valid``: 1 - residual variance / target variance."""
    t = target[valid].astype(np.float64)
    r = t - fitted[valid].astype(np.float64)
    var = float(t.var())
    return 1.0 - float(r.var()) / var if var > 1e-9 else -1.0


class Verifier:
    """Registers one figure onto candidates; ``render(uid, window)`` gives a candidate's pixels (None: not
    available): its stored values (higher is brighter) when it has them, which no window has clipped or
    quantised, else its 8-bit rendering under ``window``, at the best resolution at hand.
    """

    def __init__(
        self,
        figure: npt.NDArray[np.generic],
        render: Callable[[str, tuple[float, float] | None], npt.NDArray[np.generic] | None],
    ) -> None:
        grey, mask = figure_grey(np.asarray(figure))
        size = fit(grey.shape, WORK) if max(grey.shape[:2]) > WORK else (grey.shape[1], grey.shape[0])
        grey = cast(U8, resize(grey, size))
        self._mask = np.asarray(resize(mask, size)) > 127
        self._grey: F32 = grey.astype(np.float32)
        self._grey_low = np.asarray(cv2.GaussianBlur(self._grey, (0, 0), FIDELITY_SIGMA), np.float32)
        self._render = render
        self._cache: dict[str, Registered | None] = {}

    def register(
        self, candidate: Candidate, like: Registered | None = None, *, optimise: bool = True
    ) -> Registered | None:
        """Register ``candidate``, starting from its own placement or from ``like``'s registration (an
        adjacent slice of the same series sits in the same frame, so its warp is the better start).

        Without ``optimise`` the start is taken as it is: a quick score for scanning a series in ``like``'s
        frame. An optimised result replaces a quick one; a quick one never replaces an optimised one.
        """
        uid = candidate.sop_instance_uid
        cached = self._cache.get(uid)
        if uid in self._cache and (cached is None or cached.converged or not optimise):
            return cached
        result = self._register(candidate, like, optimise)
        self._cache[uid] = result
        return result

    def _register(self, candidate: Candidate, like: Registered | None, optimise: bool) -> Registered | None:
        image = self._render(candidate.sop_instance_uid, candidate.window)
        if image is None:
            return None
        h_img, w_img = image.shape[:2]
        h, w = self._grey.shape
        x0, y0, x1, y1 = candidate.box
        if like is not None and like.warp is not None and like.shape is not None:
            start = np.asarray(like.warp, dtype=np.float32)
            ky, kx = h_img / like.shape[0], w_img / like.shape[1]
            warp = (start * np.array([[kx], [ky]], dtype=np.float32)).astype(np.float32)
        else:
            sx = (x1 - x0) * w_img / w
            sy = (y1 - y0) * h_img / h
            warp = np.array([[sx, 0.0, x0 * w_img], [0.0, sy, y0 * h_img]], dtype=np.float32)
        source = image.astype(np.float32)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        ones = np.ones(source.shape, np.float32)

        def place(warp: F32) -> tuple[F32, npt.NDArray[np.bool_]]:
            warped = np.asarray(
                cv2.warpAffine(source, warp, (w, h), flags=flags, borderValue=0.0), np.float32
            )
            inside = cv2.warpAffine(ones, warp, (w, h), flags=flags, borderValue=0.0) > 0.99
            return warped, self._mask & inside

        warped, valid = place(warp)
        if valid.mean() < 0.3:
            return Registered(candidate.sop_instance_uid, -1.0, -1.0, False)
        converged = optimise
        if optimise:
            # Show the candidate the way the figure shows it (window and all), then register.
            tone = _fit_tone(warped, self._grey, valid)
            try:
                warp = _ecc(self._grey, _shown(source, tone), self._mask.astype(np.uint8), warp)
            except cv2.error:
                converged = False  # keep the start
            warped, valid = place(warp)
        if valid.mean() < 0.5:  # the registration slid off the instance: no fit
            return Registered(candidate.sop_instance_uid, -1.0, -1.0, False)
        tone = _fit_tone(warped, self._grey, valid)
        score = _masked_ncc(self._grey, _shown(warped, tone), valid)
        # Fidelity: how much of the figure's structure (low-passed, past pixel noise) the candidate explains.
        low = np.asarray(cv2.GaussianBlur(warped, (0, 0), FIDELITY_SIGMA), np.float32)
        fidelity = _explained(self._grey_low, _shown(low, _fit_tone(low, self._grey_low, valid)), valid)
        mapped = _shown(warped, tone)
        fine = _masked_ncc(
            self._grey - self._grey_low,
            mapped - np.asarray(cv2.GaussianBlur(mapped, (0, 0), FIDELITY_SIGMA), np.float32),
            valid,
        )
        rows = tuple(tuple(float(v) for v in row) for row in warp)
        residual = np.where(valid, self._grey_low - _shown(low, _fit_tone(low, self._grey_low, valid)), 0.0)
        energy = cv2.GaussianBlur(residual.astype(np.float32) ** 2, (0, 0), LOCAL_SIGMA)
        weight = cv2.GaussianBlur(valid.astype(np.float32), (0, 0), LOCAL_SIGMA)
        local = np.sqrt(np.max(np.where(weight > 0.5, energy / np.maximum(weight, 1e-6), 0.0)))
        contrast = float(self._grey_low[valid].std()) or 1.0
        return Registered(
            candidate.sop_instance_uid,
            score,
            fidelity,
            converged,
            rows,
            (h_img, w_img),
            fine,
            float(local) / contrast,
        )
