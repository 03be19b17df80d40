"""Render a DICOM image to 8 bits the way a viewer shows it.

The pipeline of PS3.3 C.11 is applied in order: Modality LUT (Rescale Slope/Intercept, C.11.1), VOI LUT or
window (C.11.2, linear function of C.11.2.1.2), then Presentation LUT shape: MONOCHROME1 is inverted so that
the output is always "higher is brighter". Colour images are returned as 8-bit RGB.

:func:`stored_values` stops after the Modality LUT and returns :class:`GreyValues`, which can be shown again
under any window: a report figure may have been captured under a window other than the instance's own.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from gateway.errors import GatewayError

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
ImageFormat = Literal["png", "jpeg"]


class ImagingError(GatewayError):
    """Pixel data that cannot be rendered (absent, unsupported, corrupt)."""


_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "PALETTE COLOR")


def _window(values: npt.NDArray[np.floating[Any]], center: float, width: float) -> U8:
    # C.11.2.1.2.1: linear window; width < 1 is not allowed by the standard, clamp it.
    width = max(width, 1.0)
    low = center - 0.5 - (width - 1) / 2
    scaled = (values - low) / (width - 1 if width > 1 else 1.0)
    out: U8 = np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def _stretch(values: npt.NDArray[np.float64]) -> U8:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.clip((values - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class GreyValues:
    """A grey frame after the Modality LUT (PS3.3 C.11.1), e.g. Hounsfield units for CT.

    ``monochrome1`` keeps the Presentation LUT shape, so that every window shows "higher is brighter" the way
    :func:`render_dataset` does.
    """

    values: F32
    monochrome1: bool = False

    def __post_init__(self) -> None:
        if self.values.ndim != 2:
            raise ValueError(f"grey values must be 2-D, not of shape {self.values.shape}")

    def windowed(self, center: float, width: float) -> U8:
        """The frame under the linear window (``center``, ``width``) of C.11.2.1.2."""
        out = _window(self.values, center, width)
        return np.ascontiguousarray(255 - out if self.monochrome1 else out)


def _frame(ds: Dataset, frame: int) -> tuple[npt.NDArray[Any], str]:
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ImagingError("dataset has no pixel data")
    try:
        pixels = ds.pixel_array  # decoded once; pydicom keeps it on the dataset
    except Exception as exc:  # pydicom raises many types for unsupported or corrupt data
        raise ImagingError(f"cannot decode pixel data: {exc}") from exc
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[min(frame, frames - 1)]
    return pixels, str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))


def render_dataset(ds: Dataset, *, frame: int = 0, window: tuple[float, float] | None = None) -> U8:
    """Return the displayed image of ``ds`` as ``uint8`` (H×W grey or H×W×3 RGB).

    ``window`` (center, width) overrides the dataset's VOI. Without one, the first VOI LUT or window in the
    dataset is used; without that either, the full range of the frame is stretched.
    """
    pixels, photometric = _frame(ds, frame)
    if photometric in _COLOUR:
        if photometric == "PALETTE COLOR":
            from pydicom.pixels.processing import apply_color_lut

            pixels = apply_color_lut(pixels, ds)
        elif photometric.startswith("YBR") and photometric not in ("YBR_RCT", "YBR_ICT"):
            from pydicom.pixels.processing import convert_color_space

            pixels = convert_color_space(pixels, photometric, "RGB")
        arr = np.asarray(pixels)
        if arr.dtype != np.uint8:
            arr = _stretch(arr.astype(np.float64))
        return np.ascontiguousarray(arr)
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    if window is not None:
        out = _window(values, window[0], window[1])
    elif "VOILUTSequence" in ds:
        try:
            out = _stretch(np.asarray(apply_voi_lut(values, ds, index=0, prefer_lut=True), dtype=np.float64))
        except Exception:  # a malformed VOI LUT: fall back to the full range
            out = _stretch(values)
    elif (first := dataset_window(ds)) is not None:
        out = _window(values, first[0], first[1])
    else:
        out = _stretch(values)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return np.ascontiguousarray(out)


def stored_values(ds: Dataset, *, frame: int = 0) -> GreyValues | None:
    """The frame's values after the Modality LUT (C.11.1), or None for a colour image (no window applies)."""
    pixels, photometric = _frame(ds, frame)
    if photometric in _COLOUR:
        return None
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
    return GreyValues(np.ascontiguousarray(values), monochrome1=photometric == "MONOCHROME1")


def dataset_window(ds: Dataset) -> tuple[float, float] | None:
    """The first (center, width) pair of the VOI LUT module, if any (C.11.2.1.2)."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None
    try:
        c = float(center[0] if isinstance(center, MultiValue) else center)
        w = float(width[0] if isinstance(width, MultiValue) else width)
    except (TypeError, ValueError, IndexError):
        return None
    return (c, w) if w > 0 else None


def read_dataset(path: str | Path) -> Dataset:
    """Read a DICOM file, translating any failure into :class:`ImagingError`."""
    try:
        return dcmread(path)
    except Exception as exc:
        raise ImagingError(f"cannot read {Path(path).name}: {exc}") from exc


def read_and_render(path: str | Path, *, window: tuple[float, float] | None = None) -> U8:
    """Read a DICOM file and render its first frame."""
    return render_dataset(read_dataset(path), window=window)


def encode_image(
    image: U8, fmt: ImageFormat = "png", *, max_size: int | None = None, quality: int = 90
) -> bytes:
    """Encode ``image`` as PNG or JPEG, shrunk (aspect kept) so its longer side is at most ``max_size``."""
    pil = Image.fromarray(image)
    if max_size is not None and max(pil.size) > max_size:
        pil.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if fmt == "png":
        pil.save(buf, format="PNG", optimize=False)
    else:
        pil.convert("RGB" if pil.mode not in ("L", "RGB") else pil.mode).save(
            buf, format="JPEG", quality=quality
        )
    return buf.getvalue()
