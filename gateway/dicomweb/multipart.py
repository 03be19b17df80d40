"""``multipart/related`` bodies (RFC 2387) as PS3.18 8.6.1.2 uses them: encode for WADO, decode for STOW."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass


class MultipartError(ValueError):
    """A body that is not the multipart/related the request's Content-Type announced."""


@dataclass(frozen=True)
class Part:
    content_type: str
    data: bytes
    location: str | None = None


def encode(parts: Iterable[Part]) -> tuple[bytes, str]:
    """Return ``(body, boundary)``."""
    boundary = secrets.token_hex(16)
    chunks: list[bytes] = []
    for part in parts:
        head = f"--{boundary}\r\nContent-Type: {part.content_type}\r\n"
        if part.location:
            head += f"Content-Location: {part.location}\r\n"
        chunks += [head.encode("ascii"), b"\r\n", part.data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(chunks), boundary


def content_type_params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``type/sub; a=b; c="d"`` into the media type and its (lower-cased name) parameters."""
    pieces = re.findall(r'(?:[^;"]|"[^"]*")+', value)
    media = pieces[0].strip().lower() if pieces else ""
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        name, _, val = piece.strip().partition("=")
        params[name.strip().lower()] = val.strip().strip('"')
    return media, params


def decode(body: bytes, content_type: str) -> list[Part]:
    media, params = content_type_params(content_type)
    if media != "multipart/related":
        raise MultipartError(f"expected multipart/related, got {media or 'nothing'}")
    boundary = params.get("boundary")
    if not boundary:
        raise MultipartError("multipart/related without a boundary")
    delimiter = b"--" + boundary.encode("ascii")
    pieces = body.split(delimiter)
    if len(pieces) < 3:
        raise MultipartError("no parts in the body")
    parts: list[Part] = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        piece = piece.removeprefix(b"\r\n")
        head, sep, data = piece.partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("a part without headers")
        data = data.removesuffix(b"\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, val = line.partition(":")
            headers[name.strip().lower()] = val.strip()
        parts.append(Part(headers.get("content-type", params.get("type", "")), data))
    if not parts:
        raise MultipartError("no parts in the body")
    return parts
