"""WADO-RS payloads (PS3.18 10.4): instances in a negotiated transfer syntax, metadata, frames, bulk data,
and rendered images. Pure functions of a file path and the request's choices; the routes do the I/O."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from gateway.dicomweb.multipart import content_type_params
from gateway.imaging import ImagingError, encode_image, render_dataset
from gateway.imaging.render import DEFAULT_MAX_PIXELS

#: What this server can transcode to (pydicom decodes everything pylibjpeg reads and encodes these).
TRANSCODE_TARGETS = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, JPEG2000Lossless)
#: PS3.18 8.7.3.5.2: without a transfer-syntax parameter, application/dicom means Explicit VR Little Endian.
DEFAULT_SYNTAX = str(ExplicitVRLittleEndian)
BULK_THRESHOLD = 1024


class NotAcceptable(ValueError):
    """No representation the client accepts can be produced (→ 406)."""


class BadParameter(ValueError):
    """A query parameter with a value this server cannot use (→ 400)."""


def accepted_syntaxes(accept: str, media: str = "application/dicom") -> list[str]:
    """The transfer syntaxes a client accepts for ``media`` (in its order); ``*`` means any."""
    if not accept.strip():
        return [DEFAULT_SYNTAX]
    out: list[str] = []
    for item in accept.split(","):
        mtype, params = content_type_params(item)
        inner = params.get("type", media).lower() if mtype == "multipart/related" else mtype
        if inner in (media, "*/*", "application/*") or mtype == "*/*":
            syntax = params.get("transfer-syntax")
            out.append(syntax if syntax else ("*" if inner != media else DEFAULT_SYNTAX))
    if not out:
        raise NotAcceptable(f"{media} is not among the accepted types")
    return out


def choose_syntax(stored: str, accepted: list[str]) -> str:
    for syntax in accepted:
        if syntax in ("*", stored):
            return stored
        if syntax in TRANSCODE_TARGETS:
            return syntax
    raise NotAcceptable(
        f"stored as {stored}; can transcode only to {', '.join(TRANSCODE_TARGETS)} or send as stored"
    )


def instance_bytes(path: str | Path, stored: str, target: str) -> bytes:
    """The file exactly as stored when ``target`` is its syntax; otherwise transcoded with pydicom."""
    raw = Path(path).read_bytes()
    if target == stored:
        return raw
    ds = dcmread(io.BytesIO(raw))
    try:
        if "PixelData" in ds and ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        if UID(target).is_compressed:
            ds.compress(target)
        else:
            ds.file_meta.TransferSyntaxUID = UID(target)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
    except Exception as exc:  # pydicom raises many types for pixel data it cannot recode
        raise NotAcceptable(f"cannot transcode to {target}: {exc}") from exc
    return buf.getvalue()


def metadata(path: str | Path, bulk_uri: Callable[[str], str]) -> dict[str, Any]:
    """DICOM JSON (PS3.18 F.2) of one instance, large binary values as BulkDataURI."""
    ds = dcmread(path, stop_before_pixels=False)

    def handler(elem: DataElement) -> str:
        return bulk_uri(f"{elem.tag:08X}")

    meta = ds.to_json_dict(bulk_data_threshold=BULK_THRESHOLD, bulk_data_element_handler=handler)
    meta["00020010"] = {"vr": "UI", "Value": [str(ds.file_meta.TransferSyntaxUID)]}
    return meta


def bulk_value(path: str | Path, tag: str) -> bytes:
    ds = dcmread(path)
    try:
        key = int(tag, 16)
    except ValueError as exc:
        raise BadParameter(f"{tag!r} is not a tag") from exc
    if key not in ds:
        raise KeyError(tag)
    value = ds[key].value
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def _frames_of(ds: Dataset) -> int:
    return int(getattr(ds, "NumberOfFrames", 1) or 1)


def parse_frames(text: str, available: int) -> list[int]:
    try:
        numbers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise BadParameter(f"frame list {text!r} is not comma-separated integers") from exc
    if not numbers or any(n < 1 or n > available for n in numbers):
        raise KeyError(f"frames {text} not in 1..{available}")
    return numbers


def frame_bytes(path: str | Path, frames: str) -> list[bytes]:
    """Uncompressed pixel data of the given 1-based frames (application/octet-stream)."""
    ds = dcmread(path)
    if "PixelData" not in ds:
        raise KeyError("no pixel data")
    numbers = parse_frames(frames, _frames_of(ds))
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise NotAcceptable(f"cannot decode pixel data: {exc}") from exc
    if _frames_of(ds) == 1:
        pixels = pixels[np.newaxis, ...]
    return [
        np.ascontiguousarray(pixels[n - 1]).astype(pixels.dtype.newbyteorder("<")).tobytes() for n in numbers
    ]


@dataclass(frozen=True)
class RenderOptions:
    media_type: str = "image/jpeg"
    window: tuple[float, float] | None = None
    viewport: tuple[int, int] | None = None
    crop: tuple[int, int, int, int] | None = None
    quality: int = 90


def render_media(accept: str, query_accept: str | None) -> str:
    """PS3.18 8.3.5.1.2 rendered media types we make: JPEG (default) and PNG."""
    wanted = (query_accept or accept or "image/jpeg").lower()
    for item in wanted.split(","):
        mtype, _ = content_type_params(item)
        if mtype in ("image/jpeg", "image/png"):
            return mtype
        if mtype in ("image/*", "*/*"):
            return "image/jpeg"
    raise NotAcceptable("rendered resources are image/jpeg or image/png")


def render_options(params: dict[str, str], accept: str, default_quality: int) -> RenderOptions:
    media = render_media(accept, params.get("accept"))
    window = None
    if "window" in params:
        parts = params["window"].split(",")
        try:
            center, width = float(parts[0]), float(parts[1])
        except (ValueError, IndexError) as exc:
            raise BadParameter("window is center,width[,function]") from exc
        if width <= 0:
            raise BadParameter("window width must be positive")
        if len(parts) > 2 and parts[2].strip().lower() not in ("linear", ""):
            raise BadParameter("only the linear VOI LUT function is supported")
        window = (center, width)
    viewport = crop = None
    if "viewport" in params:
        try:
            nums = [int(float(x)) for x in params["viewport"].split(",") if x.strip()]
        except ValueError as exc:
            raise BadParameter("viewport is vw,vh[,sx,sy,sw,sh]") from exc
        if len(nums) not in (2, 6) or nums[0] <= 0 or nums[1] <= 0 or nums[0] > 4096 or nums[1] > 4096:
            raise BadParameter("viewport is vw,vh[,sx,sy,sw,sh] with 0 < vw, vh <= 4096")
        viewport = (nums[0], nums[1])
        if len(nums) == 6:
            crop = (nums[2], nums[3], nums[4], nums[5])
    quality = default_quality
    if "quality" in params:
        if not params["quality"].isdigit() or not 1 <= int(params["quality"]) <= 100:
            raise BadParameter("quality is an integer from 1 to 100")
        quality = int(params["quality"])
    return RenderOptions(media, window, viewport, crop, quality)


def rendered(
    path: str | Path,
    options: RenderOptions,
    *,
    frame: int = 1,
    max_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> bytes:
    ds = dcmread(path)
    if frame < 1 or frame > _frames_of(ds):
        raise KeyError(f"frame {frame} not in 1..{_frames_of(ds)}")
    try:
        pixels = render_dataset(ds, frame=frame - 1, window=options.window, max_pixels=max_pixels)
    except ImagingError as exc:
        raise NotAcceptable(str(exc)) from exc
    if options.crop is not None:
        sx, sy, sw, sh = options.crop
        x0, x1 = sorted((sx, sx + sw))
        y0, y1 = sorted((sy, sy + sh))
        pixels = pixels[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)]
        if pixels.size == 0:
            raise BadParameter("viewport crop lies outside the image")
    size = max_size
    if options.viewport is not None:
        size = min(options.viewport) if size is None else min(size, *options.viewport)
    fmt: Literal["png", "jpeg"] = "png" if options.media_type == "image/png" else "jpeg"
    from PIL import Image

    if options.viewport is not None:
        # Fit inside vw×vh keeping the aspect ratio (PS3.18 8.3.5.1.3), growing small images too.
        h, w = pixels.shape[:2]
        scale = min(options.viewport[0] / w, options.viewport[1] / h)
        img = Image.fromarray(pixels).resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS
        )
        pixels = np.asarray(img)
        size = None
    return encode_image(pixels, fmt, max_size=size, quality=options.quality)


class RangeNotSatisfiable(ValueError):
    """A ``Range`` no byte of the value falls in (→ 416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range (first, last inclusive) a ``Range`` header asks of a value of ``size`` bytes
    (RFC 9110 14.1.2), or None for the whole value: no header, another unit, or several ranges (a server may
    ignore a multi-range request and send everything). :class:`RangeNotSatisfiable` when it misses."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_raw, dash, last_raw = spec.strip().partition("-")
    if not dash or not (first_raw.isdigit() or last_raw.isdigit()):
        return None  # malformed: ignored, as RFC 9110 allows
    if not first_raw:  # a suffix: the last N bytes
        n = int(last_raw)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"bytes */{size}")
        return max(0, size - n), size - 1
    if not first_raw.isdigit() or (last_raw and not last_raw.isdigit()):
        return None
    first = int(first_raw)
    last = min(int(last_raw), size - 1) if last_raw else size - 1
    if first >= size or (last_raw and int(last_raw) < first):
        raise RangeNotSatisfiable(f"bytes */{size}")
    return first, last


def json_only(accept: str) -> None:
    """QIDO-RS and metadata answer ``application/dicom+json`` only: an Accept that names DICOM XML (PS3.19
    Native DICOM Model) and nothing this server makes is a 406 that says so."""
    wanted = accept.lower()
    if "xml" in wanted and not any(x in wanted for x in ("json", "*/*", "application/*")):
        raise NotAcceptable(
            "this server answers application/dicom+json only; application/dicom+xml is not supported"
        )
