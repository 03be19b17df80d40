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


# Above this many pixels in one frame nothing is decoded at full size: the default of the setting
# ``imaging.max_pixels`` (gateway.settings.ImagingSettings), which callers pass in.
DEFAULT_MAX_PIXELS = 64_000_000
_JPEG_BASELINE = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")
# SOF markers: baseline, extended, progressive, lossless (Huffman); the others are arithmetic or hierarchical.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    """(rows, columns) from a JPEG stream's SOF header, read without decoding; None if there is none."""
    pos = 2 if data[:2] == b"\xff\xd8" else -1
    while 0 <= pos < len(data) - 9:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in _SOF:
            return int.from_bytes(data[pos + 5 : pos + 7], "big"), int.from_bytes(
                data[pos + 7 : pos + 9], "big"
            )
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def _encapsulated_frame(ds: Dataset, frame: int) -> bytes | None:
    meta = getattr(ds, "file_meta", None)
    syntax = str(getattr(meta, "TransferSyntaxUID", "")) if meta is not None else ""
    if syntax not in _JPEG_BASELINE or "PixelData" not in ds:
        return None
    from pydicom.encaps import generate_frames

    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    try:
        for index, data in enumerate(generate_frames(ds.PixelData, number_of_frames=frames)):
            if index == min(frame, frames - 1):
                return bytes(data)
    except Exception as exc:
        raise ImagingError(f"cannot split encapsulated pixel data: {exc}") from exc
    return None


def _reduced_jpeg(data: bytes, size: tuple[int, int], max_pixels: int) -> npt.NDArray[Any]:
    """Decode a baseline JPEG at 1/2, 1/4 or 1/8 scale (the DCT allows it; Pillow's ``draft``)."""
    rows, cols = size
    scale = 1
    while scale < 8 and (rows // scale) * (cols // scale) > max_pixels:
        scale *= 2
    if (rows // scale) * (cols // scale) > max_pixels:
        raise ImagingError(
            f"JPEG frame of {rows}×{cols} pixels is above the pixel limit {max_pixels} even at 1/8 scale"
        )
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft(image.mode, (cols // scale, rows // scale))
            return np.asarray(image)
    except Exception as exc:
        raise ImagingError(f"cannot decode JPEG frame: {exc}") from exc


def _frame(ds: Dataset, frame: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[npt.NDArray[Any], str]:
    """Decode one frame; its size (Rows×Columns, and a JPEG's own header) is checked first."""
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ImagingError("dataset has no pixel data")
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    except (TypeError, ValueError) as exc:
        raise ImagingError(f"unreadable Rows/Columns: {exc}") from exc
    jpeg = _encapsulated_frame(ds, frame)
    if jpeg is not None:
        size = jpeg_dimensions(jpeg)
        if size is not None and size != (rows, cols):
            raise ImagingError(
                f"JPEG frame of {size[0]}×{size[1]} pixels, but Rows×Columns say {rows}×{cols}"
            )
        if size is not None and rows * cols > max_pixels:
            pixels = _reduced_jpeg(jpeg, size, max_pixels)
            return pixels, ("RGB" if pixels.ndim == 3 else photometric)
    if rows * cols > max_pixels:
        raise ImagingError(
            f"image of {rows}×{cols} pixels is above the pixel limit {max_pixels}; not decoded"
        )
    try:
        pixels = ds.pixel_array  # decoded once; pydicom keeps it on the dataset
    except Exception as exc:  # pydicom raises many types for unsupported or corrupt data
        raise ImagingError(f"cannot decode pixel data: {exc}") from exc
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[min(frame, frames - 1)]
    return pixels, photometric


def render_dataset(
    ds: Dataset,
    *,
    frame: int = 0,
    window: tuple[float, float] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> U8:
    """Return the displayed image of ``ds`` as ``uint8`` (H×W grey or H×W×3 RGB).

    ``window`` (center, width) overrides the dataset's VOI. Without one, the first VOI LUT or window in the
    dataset is used; without that either, the full range of the frame is stretched. A frame above
    ``max_pixels`` is decoded reduced when it is baseline JPEG (so the result is smaller than Rows×Columns)
    and refused with :class:`ImagingError` otherwise.
    """
    pixels, photometric = _frame(ds, frame, max_pixels)
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


def stored_values(ds: Dataset, *, frame: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> GreyValues | None:
    """The frame's values after the Modality LUT (C.11.1), or None for a colour image (no window applies)."""
    pixels, photometric = _frame(ds, frame, max_pixels)
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


def read_and_render(
    path: str | Path, *, window: tuple[float, float] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> U8:
    """Read a DICOM file and render its first frame."""
    return render_dataset(read_dataset(path), window=window, max_pixels=max_pixels)


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
