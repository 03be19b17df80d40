"""A structural check of received bytes: every value fits, and the stream ends on an element boundary.

pydicom reads a truncated stream without complaint: a short last value comes back short, and a header cut in
half ends the dataset early. Decoding the attributes we index cannot tell such a C-STORE from a complete
one, yet Success means the instance was kept (PS3.4 B.2.3), so it must never be given for a truncated one.
The walk reads only tags and lengths (PS3.5 section 7), so it costs little even for large instances. It also
holds the one nesting limit (64) for sequences of defined and undefined length alike, so that nothing read
later recurses without bound, and refuses File Meta Information elements (group 0002) inside the data set,
which readers would otherwise take for the file's own.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from typing import BinaryIO

from pydicom.datadict import dictionary_VR

from gateway.errors import InvalidInstance, OutOfResources

# VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 Table 7.1-1).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_MAX_DEPTH = 64

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")


@functools.lru_cache(maxsize=4096)
def _is_sequence(tag: int) -> bool:
    """In implicit VR the dictionary says which elements are sequences; private ones count as not."""
    try:
        return bool(dictionary_VR(tag) == "SQ")
    except KeyError:
        return False


class _Walker:
    def __init__(self, data: bytes | memoryview, *, implicit: bool, little: bool) -> None:
        self.data = memoryview(data)
        self.implicit = implicit
        self.endian = "<" if little else ">"

    def _need(self, pos: int, n: int) -> None:
        if pos + n > len(self.data):
            raise InvalidInstance(f"dataset truncated at byte {pos}: {n} more bytes expected")

    def _header(self, pos: int) -> tuple[int, int, bytes, int]:
        """(tag, length, VR or b"" when implicit, position of the value)."""
        self._need(pos, 8)
        group, element = struct.unpack_from(self.endian + "HH", self.data, pos)
        tag = (group << 16) | element
        if group == 0xFFFE or self.implicit:
            (length,) = struct.unpack_from(self.endian + "L", self.data, pos + 4)
            return tag, length, b"", pos + 8
        vr = bytes(self.data[pos + 4 : pos + 6])
        if vr in _LONG_VRS:
            self._need(pos, 12)
            (length,) = struct.unpack_from(self.endian + "L", self.data, pos + 8)
            return tag, length, vr, pos + 12
        (length,) = struct.unpack_from(self.endian + "H", self.data, pos + 6)
        return tag, length, vr, pos + 8

    def elements(self, pos: int, end: int | None, depth: int) -> int:
        """Walk elements from ``pos`` to ``end`` (or to an item delimiter when ``end`` is None)."""
        if depth > _MAX_DEPTH:
            raise InvalidInstance("sequences nested too deeply")
        limit = len(self.data) if end is None else end
        while pos < limit:
            tag, length, vr, pos = self._header(pos)
            if tag == _ITEM_END and end is None:
                return pos
            if depth == 0 and tag >> 16 == 0x0002:
                raise InvalidInstance(
                    f"File Meta Information element ({tag >> 16:04X},{tag & 0xFFFF:04X}) inside the data set"
                )
            if length == _UNDEFINED:
                # An undefined-length UN holds implicit VR little endian items (PS3.5 6.2.2).
                inner = _Walker(self.data, implicit=True, little=True) if vr == b"UN" else self
                pos = inner.items(pos, depth + 1)
            else:
                self._need(pos, length)
                if vr == b"SQ" or (self.implicit and _is_sequence(tag)):
                    # Defined-length sequences count against the same nesting limit (PS3.5 7.5.1).
                    self.defined_items(pos, pos + length, depth + 1)
                pos += length
        if end is None and depth > 0:
            raise InvalidInstance("dataset truncated inside an item of undefined length")
        if pos != limit:
            raise InvalidInstance("an element runs past the end of its item")
        return pos

    def defined_items(self, pos: int, end: int, depth: int) -> None:
        """Walk the items of a defined-length sequence that ends at ``end``."""
        if depth > _MAX_DEPTH:
            raise InvalidInstance("sequences nested too deeply")
        while pos < end:
            tag, length, _vr, pos = self._header(pos)
            if tag != _ITEM:
                raise InvalidInstance(f"expected an item, found tag {tag:08X}")
            if length == _UNDEFINED:
                pos = self.elements(pos, None, depth)
            else:
                self._need(pos, length)
                pos = self.elements(pos, pos + length, depth)
        if pos != end:
            raise InvalidInstance("an item runs past the end of its sequence")

    def items(self, pos: int, depth: int) -> int:
        """Walk the items of an undefined-length sequence or encapsulated value up to its delimiter."""
        while True:
            tag, length, _vr, pos = self._header(pos)
            if tag == _SEQUENCE_END:
                return pos
            if tag != _ITEM:
                raise InvalidInstance(f"expected an item, found tag {tag:08X}")
            if length == _UNDEFINED:
                pos = self.elements(pos, None, depth)
            else:
                self._need(pos, length)
                pos += length


def inflate_bounded(deflated: bytes | memoryview, out: BinaryIO, limit: int, step: int = 1 << 20) -> int:
    """Inflate a deflated data set (PS3.5 A.5) into ``out``, never holding more than ``step`` bytes of it.

    Raises :class:`OutOfResources` once the inflated size passes ``limit`` (a deflate bomb stops there),
    :class:`InvalidInstance` for a corrupt or truncated stream, or bytes after its end other than the one
    NUL pad that keeps the encoded length even. Returns the inflated size.
    """
    view = memoryview(deflated)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    pos = 0
    try:
        while pos < len(view) and not inflater.eof:
            piece = view[pos : pos + step]
            pos += len(piece)
            data = inflater.decompress(piece, step)
            while True:
                total += len(data)
                if total > limit:
                    raise OutOfResources(f"deflated data set inflates past max_instance_bytes {limit}")
                out.write(data)
                if not inflater.unconsumed_tail:
                    break
                data = inflater.decompress(inflater.unconsumed_tail, step)
    except zlib.error as exc:
        raise InvalidInstance(f"deflated dataset cannot be inflated: {exc}") from exc
    if not inflater.eof:
        raise InvalidInstance("deflated dataset truncated")
    trailing = len(inflater.unused_data) + (len(view) - pos)
    if trailing > 1 or (trailing == 1 and bytes(view[-1:]) != b"\x00"):
        raise InvalidInstance(f"{trailing} bytes of trailing data after the deflated data set")
    return total


def check_complete(
    stream: bytes | memoryview, transfer_syntax_uid: str, *, max_inflated: int = 2 * 1024**3
) -> None:
    """Raise :class:`InvalidInstance` unless ``stream`` (a dataset, no file meta) is structurally whole."""
    if transfer_syntax_uid in DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        inflated = io.BytesIO()
        inflate_bounded(stream, inflated, limit=max_inflated)
        stream = inflated.getbuffer()
    walker = _Walker(
        stream,
        implicit=transfer_syntax_uid == IMPLICIT_VR_LITTLE_ENDIAN,
        little=transfer_syntax_uid != EXPLICIT_VR_BIG_ENDIAN,
    )
    try:
        walker.elements(0, len(walker.data), 0)
    except struct.error as exc:  # pragma: no cover - _need() guards every unpack
        raise InvalidInstance(f"dataset truncated: {exc}") from exc


def dataset_offset(encoded: bytes | memoryview) -> int:
    """Where the dataset starts in a Part-10 stream (after preamble and file meta), or 0 without them."""
    view = memoryview(encoded)
    if len(view) < 132 or bytes(view[128:132]) != b"DICM":
        return 0
    pos = 132
    walker = _Walker(view, implicit=False, little=True)
    while pos + 8 <= len(view):
        (group,) = struct.unpack_from("<H", view, pos)
        if group != 0x0002:
            break
        _tag, length, _vr, value = walker._header(pos)
        walker._need(value, length)
        pos = value + length
    return pos
