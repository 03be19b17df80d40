"""What figure matching needs from each instance, computed once and kept with the study.

Decoding a 2,000-slice CT takes longer than matching six figures against it. So the ``extract`` stage reads
every image instance once and keeps, per instance, its rendering and its stored values at the matcher's fine
level (:data:`SIDE` px; values as float16) and its slice geometry (ImagePositionPatient and
ImageOrientationPatient, PS3.3 C.7.6.2). Re-running ``align`` then reads one file per study version and no
pixel data; a new study version recomputes only the instances that changed (same SOP Instance UID and
digest: reused).

The file is a NumPy ``.npz`` without pickles: instances are grouped by shape, and each group stores stacked
arrays.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt
from pydicom.multival import MultiValue

from gateway.align.figures import Rendering
from gateway.imaging import GreyValues, ImagingError, read_dataset, render_dataset, stored_values
from gateway.imaging.render import DEFAULT_MAX_PIXELS

#: The longest side kept: the matcher's fine level.
SIDE = 128
FORMAT = "gateway-align-features/1"


@dataclass(frozen=True)
class InstanceFeatures:
    """One instance as the matcher needs it."""

    sop_instance_uid: str
    digest: str
    image: npt.NDArray[np.uint8]  # own rendering, grey or RGB, longest side <= SIDE
    values: npt.NDArray[np.float16] | None  # stored values after the Modality LUT, same size, or None
    monochrome1: bool
    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None

    def rendering(self) -> Rendering:
        values = (
            GreyValues(self.values.astype(np.float32), self.monochrome1) if self.values is not None else None
        )
        return Rendering(self.image, values)


def renderer(features: Mapping[str, InstanceFeatures]) -> Callable[[Iterable[Any]], dict[str, Rendering]]:
    """The aligner's ``instance_images`` over kept features: each asked-for instance that has them."""

    def render(infos: Iterable[Any]) -> dict[str, Rendering]:
        return {
            i.sop_instance_uid: features[i.sop_instance_uid].rendering()
            for i in infos
            if i.sop_instance_uid in features
        }

    return render


def _shrink(image: npt.NDArray[Any], side: int) -> npt.NDArray[Any]:
    h, w = image.shape[:2]
    k = side / max(h, w)
    if k >= 1:
        return image
    size = (max(1, round(w * k)), max(1, round(h * k)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=image.dtype)


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        items = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
        out = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def compute_features(
    path: str | Path, sop_instance_uid: str, digest: str, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> InstanceFeatures:
    """Read one instance and keep what matching needs. Raises :class:`ImagingError` if it has no image
    (or one above ``max_pixels``, the setting ``imaging.max_pixels``)."""
    ds = read_dataset(path)
    image = render_dataset(ds, max_pixels=max_pixels)
    values = stored_values(ds, max_pixels=max_pixels)
    position = _floats(ds.get("ImagePositionPatient"), 3)
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    small_values = None
    if values is not None:
        small_values = _shrink(values.values, SIDE).astype(np.float16)
    return InstanceFeatures(
        sop_instance_uid,
        digest,
        np.ascontiguousarray(_shrink(image, SIDE)),
        small_values,
        values.monochrome1 if values is not None else False,
        cast("tuple[float, float, float] | None", position),
        cast("tuple[float, float, float, float, float, float] | None", orientation),
    )


def pack(features: Iterable[InstanceFeatures]) -> bytes:
    """The features as one ``.npz`` (no pickles), grouped by image shape."""
    groups: dict[tuple[tuple[int, ...], bool], list[InstanceFeatures]] = {}
    for f in features:
        groups.setdefault((f.image.shape, f.values is not None), []).append(f)
    arrays: dict[str, npt.NDArray[Any]] = {"format": np.asarray(FORMAT)}
    for n, ((_, has_values), members) in enumerate(groups.items()):
        arrays[f"g{n}_uids"] = np.asarray([m.sop_instance_uid for m in members])
        arrays[f"g{n}_digests"] = np.asarray([m.digest for m in members])
        arrays[f"g{n}_images"] = np.stack([m.image for m in members])
        if has_values:
            arrays[f"g{n}_values"] = np.stack([cast(npt.NDArray[np.float16], m.values) for m in members])
        arrays[f"g{n}_mono1"] = np.asarray([m.monochrome1 for m in members])
        arrays[f"g{n}_positions"] = np.asarray(
            [m.position if m.position is not None else (np.nan,) * 3 for m in members], dtype=np.float64
        )
        arrays[f"g{n}_orientations"] = np.asarray(
            [m.orientation if m.orientation is not None else (np.nan,) * 6 for m in members], dtype=np.float64
        )
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _tuple(row: npt.NDArray[np.float64]) -> tuple[float, ...] | None:
    return None if np.isnan(row).any() else tuple(float(v) for v in row)


def unpack(data: bytes | Path) -> dict[str, InstanceFeatures]:
    """The features of a packed file, by SOP Instance UID; a file of another format gives none."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    out: dict[str, InstanceFeatures] = {}
    with np.load(source, allow_pickle=False) as npz:
        if "format" not in npz or str(npz["format"]) != FORMAT:
            return out
        n = 0
        while f"g{n}_uids" in npz:
            uids, digests = npz[f"g{n}_uids"], npz[f"g{n}_digests"]
            images = npz[f"g{n}_images"]
            values = npz.get(f"g{n}_values", None)
            mono, positions, orientations = (
                npz[f"g{n}_mono1"],
                npz[f"g{n}_positions"],
                npz[f"g{n}_orientations"],
            )
            for k, uid in enumerate(uids):
                out[str(uid)] = InstanceFeatures(
                    str(uid),
                    str(digests[k]),
                    images[k],
                    values[k] if values is not None else None,
                    bool(mono[k]),
                    cast("tuple[float, float, float] | None", _tuple(positions[k])),
                    cast("tuple[float, float, float, float, float, float] | None", _tuple(orientations[k])),
                )
            n += 1
    return out


def reuse_or_compute(
    instances: Iterable[tuple[str, str, str]],
    previous: Mapping[str, InstanceFeatures],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[list[InstanceFeatures], list[tuple[str, str]]]:
    """Features for ``(sop_instance_uid, digest, path)`` triples: reused when ``previous`` has the same
    digest, computed otherwise. Returns the features and, for instances without an image, (uid, reason)."""
    out: list[InstanceFeatures] = []
    skipped: list[tuple[str, str]] = []
    for uid, digest, path in instances:
        known = previous.get(uid)
        if known is not None and known.digest == digest:
            out.append(known)
            continue
        try:
            out.append(compute_features(path, uid, digest, max_pixels=max_pixels))
        except ImagingError as exc:
            skipped.append((uid, str(exc)))
    return out, skipped
