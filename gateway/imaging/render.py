"""Render a DICOM image to 8 bits the way a viewer shows it.

The pipeline of PS3.3 C.11 is applied in order: Modality LUT (Rescale Slope/Intercept, C.11.1), VOI LUT or
window (C.11.2, linear function of C.11.2.1.2), then Presentation LUT shape: MONOCHROME1 is inverted so that
the output is always "higher is brighter". Colour images are returned as 8-bit RGB.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from gateway.errors import GatewayError

U8 = npt.NDArray[np.uint8]
ImageFormat = Literal["png", "jpeg"]


class ImagingError(GatewayError):
    """Pixel data that cannot be rendered (absent, unsupported, corrupt)."""


def _window(values: npt.NDArray[np.float64], center: float, width: float) -> U8:
    # C.11.2.1.2.1: linear window; width < 1 is not allowed by the standard, clamp it.
    width = max(width, 1.0)
    low = center - 0.5 - (width - 1) / 2
    scaled = (values - low) / (width - 1 if width > 1 else 1.0)
    return np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _stretch(values: npt.NDArray[np.float64]) -> U8:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.clip((values - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def render_dataset(ds: Dataset, *, frame: int = 0, window: tuple[float, float] | None = None) -> U8:
    """Return the displayed image of ``ds`` as ``uint8`` (H×W grey or H×W×3 RGB).

    ``window`` (center, width) overrides the dataset's VOI. Without one, the first VOI LUT or window in the
    dataset is used; without that either, the full range of the frame is stretched.
    """
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ImagingError("dataset has no pixel data")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for unsupported or corrupt data
        raise ImagingError(f"cannot decode pixel data: {exc}") from exc
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if frames > 1:
        pixels = pixels[min(frame, frames - 1)]
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "PALETTE COLOR"):
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


def read_and_render(path: str | Path, *, window: tuple[float, float] | None = None) -> U8:
    """Read a DICOM file and render its first frame."""
    try:
        ds = dcmread(path)
    except Exception as exc:
        raise ImagingError(f"cannot read {Path(path).name}: {exc}") from exc
    return render_dataset(ds, window=window)


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
