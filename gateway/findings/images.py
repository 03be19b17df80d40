"""From stored pixels to the model's input: one transform for DICOM instances and PNG files.

A DICOM image passes through the pipeline of PS3.4 N.2: stored values → Modality LUT (rescale) → VOI LUT or
window → presentation (MONOCHROME1 is inverted so that bone is always bright). Both sources end as a square
``float32`` array in ``[0, 1]``; the models normalise it themselves, so that a checkpoint carries its own
normalisation and cannot be fed differently in training and in service.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from PIL import Image

from gateway.errors import PermanentStageError
from gateway.imaging import ImagingError, render_dataset

__all__ = [
    "FRONTAL_VIEWS",
    "LATERAL_VIEWS",
    "ImageDecodeError",
    "ViewInfo",
    "choose_views",
    "dicom_to_unit",
    "load_image",
    "read_dicom",
    "read_png",
    "resize",
]

FloatArray = npt.NDArray[np.float32]

# PS3.3 C.8.11.5.1.1 View Position (CID 4010 terms seen on chest radiographs).
FRONTAL_VIEWS = frozenset({"PA", "AP"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"})
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ""})


class ImageDecodeError(PermanentStageError):
    """An image could not be decoded into pixels."""


@dataclass(frozen=True, slots=True)
class ViewInfo:
    """What hints at an image's view, as far as the header tells."""

    view_position: str | None = None
    series_description: str | None = None
    aspect: float | None = None  # columns / rows


def _norm(value: object) -> str:
    return str(value or "").strip().upper()


def view_of(info: ViewInfo) -> str | None:
    """``"frontal"``, ``"lateral"`` or None when the header does not say."""
    position = _norm(info.view_position)
    if position in FRONTAL_VIEWS:
        return "frontal"
    if position in LATERAL_VIEWS:
        return "lateral"
    words = set(_norm(info.series_description).replace("_", " ").replace("-", " ").split())
    if words & {"LAT", "LATERAL", "LL", "RL"}:
        return "lateral"
    if words & {"PA", "AP", "FRONTAL", "FRONT"}:
        return "frontal"
    return None


def choose_views(infos: Sequence[ViewInfo]) -> tuple[int, int]:
    """Indices of the frontal and the lateral image of a study.

    ViewPosition decides first, then keywords of SeriesDescription. Without either, a lateral film is
    usually taller than wide while a frontal one is not, so the widest image is taken as frontal and the
    tallest as lateral; ties keep the order in which the images came. A study with one image uses it twice.
    """
    if not infos:
        raise ValueError("a study needs at least one image")
    views = [view_of(info) for info in infos]
    frontal = next((i for i, v in enumerate(views) if v == "frontal"), None)
    lateral = next((i for i, v in enumerate(views) if v == "lateral" and i != frontal), None)
    unknown = [i for i, v in enumerate(views) if v is None]
    if frontal is None:
        pool = unknown or [i for i in range(len(infos)) if i != lateral] or [0]
        frontal = (
            max(pool, key=lambda i: (infos[i].aspect or 0.0, -i)) if _has_aspects(infos, pool) else pool[0]
        )
    if lateral is None:
        pool = [i for i in (unknown or range(len(infos))) if i != frontal]
        if not pool:
            lateral = frontal
        elif _has_aspects(infos, pool):
            lateral = min(pool, key=lambda i: (infos[i].aspect or 0.0, i))
        else:
            lateral = pool[0]
    return frontal, lateral


def _has_aspects(infos: Sequence[ViewInfo], pool: Sequence[int]) -> bool:
    aspects = {infos[i].aspect for i in pool}
    return None not in aspects and len(aspects) > 1


def dicom_to_unit(ds: pydicom.Dataset) -> FloatArray:
    """The first frame of ``ds`` as presentation values scaled to ``[0, 1]`` (PS3.4 N.2).

    The display transform (modality LUT, VOI LUT or window, MONOCHROME1) is the gateway's one renderer,
    :func:`gateway.imaging.render_dataset`; colour images are reduced to luminance.
    """
    try:
        shown = render_dataset(ds)
    except ImagingError as exc:
        raise ImageDecodeError(str(exc)) from exc
    if shown.ndim == 3:
        # Colour chest films are screenshots or secondary captures; luminance is what a reader sees.
        rgb = shown.astype(np.float32)
        return _scale(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)
    unit: FloatArray = shown.astype(np.float32) / np.float32(255.0)
    return unit


def _scale(values: npt.NDArray[np.floating]) -> FloatArray:
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def read_dicom(path: Path) -> tuple[FloatArray, ViewInfo, str | None]:
    """Pixels in ``[0, 1]``, view hints and SOP Instance UID of a DICOM file."""
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise ImageDecodeError(f"{path}: not a readable DICOM file: {exc}") from exc
    unit = dicom_to_unit(ds)
    info = ViewInfo(
        view_position=ds.get("ViewPosition") or None,
        series_description=ds.get("SeriesDescription") or None,
        aspect=unit.shape[1] / unit.shape[0],
    )
    uid = ds.get("SOPInstanceUID")
    return unit, info, str(uid) if uid else None


def read_png(path: Path) -> FloatArray:
    """An 8- or 16-bit greyscale (or colour) PNG/JPEG file in ``[0, 1]``."""
    try:
        with Image.open(path) as img:
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(img, dtype=np.float32)
                return _scale(array)
            array = np.asarray(img.convert("L"), dtype=np.float32)
    except OSError as exc:
        raise ImageDecodeError(f"{path}: not a readable image: {exc}") from exc
    return array / 255.0


def is_dicom(path: Path) -> bool:
    if path.suffix.lower() not in _DICOM_SUFFIXES:
        return False
    with path.open("rb") as fh:
        fh.seek(128)
        return fh.read(4) == b"DICM" or path.suffix.lower() in (".dcm", ".dicom")


def load_image(path: Path) -> FloatArray:
    """Any supported file (DICOM or PNG/JPEG) in ``[0, 1]``."""
    if is_dicom(path):
        return read_dicom(path)[0]
    return read_png(path)


def resize(unit: FloatArray, size: int) -> npt.NDArray[np.uint8]:
    """Square ``size``x``size`` 8-bit image; 8 bits keep a cached training set small."""
    img = Image.fromarray(np.clip(unit * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
