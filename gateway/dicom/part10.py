"""The DICOM file format around a received data set (PS3.10 section 7).

A C-STORE carries the data set only; the file we keep adds the 128-byte preamble, ``DICM`` and the File Meta
Information (group 0002, always Explicit VR Little Endian, PS3.10 7.1). The meta group has six fixed
elements, so we encode it directly instead of building a pydicom dataset for every instance received.
"""

from __future__ import annotations

import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

PREAMBLE = b"\x00" * 128 + b"DICM"


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":  # OB has a reserved field and a 4-byte length (PS3.5 7.1.2)
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _text(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b" " if len(raw) % 2 else raw


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """The encoded File Meta Information group, group length first."""
    body = b"".join(
        (
            _element(0x0001, b"OB", b"\x00\x01"),
            _element(0x0002, b"UI", _uid(sop_class_uid)),
            _element(0x0003, b"UI", _uid(sop_instance_uid)),
            _element(0x0010, b"UI", _uid(transfer_syntax_uid)),
            _element(0x0012, b"UI", _uid(str(PYNETDICOM_IMPLEMENTATION_UID))),
            _element(0x0013, b"SH", _text(PYNETDICOM_IMPLEMENTATION_VERSION)),
        )
    )
    return _element(0x0000, b"UL", struct.pack("<I", len(body))) + body


def part10(data_set: bytes, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """A complete Part 10 file: preamble, meta group, and the data set bytes exactly as received."""
    return b"".join((PREAMBLE, file_meta(sop_class_uid, sop_instance_uid, transfer_syntax_uid), data_set))
