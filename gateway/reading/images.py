"""Image input: decoding within pixel limits, and clean-up of poor scans (deskew, denoise, contrast)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage
from PIL import ImageOps

from gateway.errors import ReadError
from gateway.reading.engines.base import Image
from gateway.reading.settings import ReadingSettings


def decode_image(data: bytes, settings: ReadingSettings) -> list[Image]:
    """Decode PNG/JPEG/TIFF bytes into RGB frames, checking the size before any pixels are decoded."""
    try:
        img = PILImage.open(io.BytesIO(data))
    except Exception as exc:
        raise ReadError(f"unreadable image: {exc}") from exc
    w, h = img.size
    if w * h > settings.max_image_pixels:
        raise ReadError(f"image of {w}x{h} px is over the limit of {settings.max_image_pixels} pixels")
    frames: list[Image] = []
    try:
        for index in range(getattr(img, "n_frames", 1)):
            if index >= settings.max_pages:
                raise ReadError(f"image has more than {settings.max_pages} frames")
            img.seek(index)
            frame = ImageOps.exif_transpose(img.copy()) or img.copy()
            frames.append(np.asarray(frame.convert("RGB"), dtype=np.uint8))
    except ReadError:
        raise
    except Exception as exc:
        raise ReadError(f"unreadable image: {exc}") from exc
    return frames


def to_rgb8(pixels: npt.NDArray[np.generic], monochrome1: bool = False) -> Image:
    """Scale any grey or colour pixel array to 8-bit RGB (DICOM images come with 12- or 16-bit greys)."""
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
        lo, hi = float(np.percentile(arr, 0.5)), float(np.percentile(arr, 99.5))
        if hi <= lo:
            hi = lo + 1
        arr = np.clip((arr - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
    if monochrome1:
        arr = 255 - arr
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3], dtype=np.uint8)


def skew_angle(gray: npt.NDArray[np.uint8], limit: float = 5.0) -> float:
    """The text skew in degrees (positive = counter-clockwise), by maximising the row-profile variance."""
    scale = 800 / max(gray.shape)
    small = cv2.resize(gray, None, fx=scale, fy=scale) if scale < 1 else gray
    ink = (small < 128).astype(np.float32)
    if ink.sum() < 50:
        return 0.0
    h, w = ink.shape
    centre = (w / 2, h / 2)

    def score(angle: float) -> float:
        m = cv2.getRotationMatrix2D(centre, angle, 1.0)
        rotated = cv2.warpAffine(ink, m, (w, h), flags=cv2.INTER_NEAREST)
        return float(np.var(rotated.sum(axis=1)))

    coarse = max(np.arange(-limit, limit + 0.01, 0.5), key=score)
    fine = max(np.arange(coarse - 0.5, coarse + 0.51, 0.1), key=score)
    return float(round(fine, 2))


def needs_enhancement(gray: npt.NDArray[np.uint8]) -> bool:
    """A poor scan: faint ink on its background, or visible speckle noise."""
    # Every other pixel keeps the noise (no averaging) at a quarter of the cost on a 300 dpi page.
    gray = np.ascontiguousarray(gray[::2, ::2])
    background = float(np.median(gray))
    ink = float(np.percentile(gray, 0.2))
    residual = cv2.absdiff(gray, cv2.medianBlur(gray, 3))
    plain = residual[gray > background - 40]
    noise = float(plain.mean()) if plain.size else 0.0
    return background - ink < 100 or noise > 3


def enhance(image: Image, mode: str = "auto") -> tuple[Image, float]:
    """Deskew, and for poor scans denoise and stretch contrast. Returns the image and the applied rotation."""
    if mode == "never":
        return image, 0.0
    gray = np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), dtype=np.uint8)
    angle = skew_angle(gray)
    out: npt.NDArray[np.uint8] = image
    if abs(angle) < 0.3:
        angle = 0.0
    else:
        h, w = gray.shape
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        out = np.asarray(
            cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255)),
            dtype=np.uint8,
        )
    if mode == "always" or needs_enhancement(gray):
        # A 3x3 median removes speckle without the cost of non-local means on a 300 dpi page.
        out = np.asarray(cv2.medianBlur(out, 3), dtype=np.uint8)
        lab = cv2.cvtColor(out, cv2.COLOR_RGB2LAB)
        clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
        lab[:, :, 0] = clahe.apply(lab[:, :, 0])
        out = np.asarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), dtype=np.uint8)
    return np.ascontiguousarray(out, dtype=np.uint8), angle


def page_quad(image: Image) -> npt.NDArray[np.float32] | None:
    """The corners of a photographed page (clockwise from top-left), or None when the image is the page.

    The page is the largest bright convex quadrilateral against a darker background. A scan, whose page fills
    the frame, has none: a quadrilateral covering nearly the whole image is not a photographed page.
    """
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    scale = 1000 / max(gray.shape)
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    scale = min(scale, 1.0)
    # Text would break the page into pieces; a wide closing fills it in before the outline is taken.
    blurred = cv2.GaussianBlur(small, (0, 0), 3)
    _, mask = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((25, 25), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(contour)
    total = small.shape[0] * small.shape[1]
    if area < 0.2 * total or area > 0.9 * total:
        return None
    hull = cv2.convexHull(contour)
    peri = cv2.arcLength(hull, True)
    for eps in (0.01, 0.02, 0.03, 0.05):
        approx = cv2.approxPolyDP(hull, eps * peri, True)
        if len(approx) == 4:
            break
    else:
        return None
    pts = approx.reshape(4, 2).astype(np.float32) / scale
    s, d = pts.sum(axis=1), np.diff(pts, axis=1).ravel()
    ordered = np.array([pts[np.argmin(s)], pts[np.argmin(d)], pts[np.argmax(s)], pts[np.argmax(d)]])
    return ordered.astype(np.float32)


def flatten_page(image: Image, quad: npt.NDArray[np.float32]) -> Image:
    """Warp the page inside ``quad`` to an upright rectangle, keeping its longer edges' lengths."""
    tl, tr, br, bl = quad
    width = int(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))
    height = int(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))
    target = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad, target)
    out = cv2.warpPerspective(
        image, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    return np.ascontiguousarray(out, dtype=np.uint8)


def even_lighting(image: Image) -> Image:
    """Divide out the paper's brightness (uneven light, shadows) so the background is white again.

    The background is estimated with a closing wider than a stroke, then a blur; ink is darker than it in
    proportion, so the division keeps contrast where the light was dim.
    """
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    k = max(15, (max(gray.shape) // 60) | 1)
    background = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    background = cv2.GaussianBlur(background, (0, 0), k / 2).astype(np.float32)
    ratio = np.clip(255.0 / np.maximum(background, 1.0), 1.0, 8.0)[:, :, None]
    out = np.clip(image.astype(np.float32) * ratio, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out, dtype=np.uint8)


def colour_ink_share(image: Image) -> float:
    """The share of pixels in saturated colour ink (pen, stamp); print is black on white."""
    hsv = cv2.cvtColor(np.ascontiguousarray(image[::2, ::2]), cv2.COLOR_RGB2HSV)
    ink = (hsv[:, :, 1] > 70) & (hsv[:, :, 2] > 50)
    return float(ink.mean())


def suppress_colour_ink(image: Image) -> Image:
    """Whiten coloured ink (blue or red pen, a red seal) and keep black print, also where the two overlap.

    Print under a stamp stays dark and grey (multiplying black by red leaves black), while ink alone is
    saturated: saturated pixels become paper and grey ones keep their value. A pen dark enough to look
    black is not told apart from print (see docs/reading.md).
    """
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    sat = hsv[:, :, 1].astype(np.float32) / 255.0
    # Blend by saturation so faint anti-aliased ink edges fade too; grey pixels are untouched. Ink is made
    # paper, not a light grey: the recognisers read faint grey text too.
    weight = np.clip((sat - 0.15) / 0.25, 0.0, 1.0)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    value = gray * (1 - weight) + 255.0 * weight
    # The faint rim of a stroke is barely coloured but still outlines the letters of a pen note: next to
    # ink, anything lighter than print is paper too.
    near = cv2.dilate((weight > 0.5).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    value[near & (gray > 140)] = 255.0
    out = np.repeat(np.clip(value, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out, dtype=np.uint8)


def prepare_page(image: Image, mode: str = "auto") -> tuple[Image, list[str]]:
    """Flatten a photographed page from its edges and even its light; a scan passes through unchanged.

    Returns the image and what was done (for the document's warnings). ``mode`` "never" changes nothing.
    """
    if mode == "never":
        return image, []
    quad = page_quad(image)
    if quad is None:
        return image, []
    flat = even_lighting(flatten_page(image, quad))
    return flat, ["photographed page: perspective flattened from the page's edges and lighting evened"]


def without_marks(image: Image) -> tuple[Image, bool]:
    """The image recognition reads: coloured pen and stamp ink whitened when there is any."""
    if colour_ink_share(image) <= 0.0005:
        return image, False
    return suppress_colour_ink(image), True
