"""The structural check that keeps a truncated C-STORE from being acknowledged."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)
from pynetdicom.dsutils import encode

from gateway.dicom.structure import check_complete, dataset_offset
from gateway.errors import InvalidInstance

SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
]


def encoded(ds: Dataset, syntax: str) -> bytes:
    ds = ds.copy()
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.value.is_undefined_length = True  # exercise item and sequence delimiters
    data = encode(ds, syntax == ImplicitVRLittleEndian, syntax != ExplicitVRBigEndian, syntax.is_deflated)
    assert data is not None
    return data


def boundaries(ds: Dataset, syntax: str) -> set[int]:
    """Lengths at which a cut leaves whole top-level elements (a shorter but well-formed dataset)."""
    out = {0}
    partial = Dataset()
    for elem in ds:
        partial.add(elem)
        out.add(len(encoded(partial, syntax)))
    return out


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("kind", ["ct", "pdf", "sr", "kos"])
def test_whole_datasets_pass(make_instance: Callable[..., Dataset], kind: str, syntax: str) -> None:
    check_complete(encoded(make_instance(kind), syntax), syntax)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
@pytest.mark.parametrize("kind", ["ct", "sr", "kos"])
def test_every_cut_inside_an_element_is_refused(
    make_instance: Callable[..., Dataset], kind: str, syntax: str
) -> None:
    ds = make_instance(kind)
    data = encoded(ds, syntax)
    whole = boundaries(ds, syntax)
    assert len(data) in whole
    for length in range(1, len(data)):
        if length in whole:
            check_complete(data[:length], syntax)
        else:
            with pytest.raises(InvalidInstance):
                check_complete(data[:length], syntax)


def test_encapsulated_pixel_data(make_instance: Callable[..., Dataset]) -> None:
    ds = make_instance("ct")
    ds.compress(RLELossless)
    data = encoded(ds, RLELossless)
    check_complete(data, RLELossless)
    for cut in (1, 4, 9, 20):
        with pytest.raises(InvalidInstance):
            check_complete(data[:-cut], RLELossless)


def test_truncated_deflate_refused(make_instance: Callable[..., Dataset]) -> None:
    data = encoded(make_instance("sr"), DeflatedExplicitVRLittleEndian)
    with pytest.raises(InvalidInstance):
        check_complete(data[:-10], DeflatedExplicitVRLittleEndian)


def test_garbage_refused() -> None:
    with pytest.raises(InvalidInstance):
        check_complete(b"\x08\x00\x18\x00UI\xff\xff" + b"1" * 10, ExplicitVRLittleEndian)


def test_dataset_offset(make_instance: Callable[..., Dataset]) -> None:
    import io

    ds = make_instance("ct")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    body = encoded(ds, ExplicitVRLittleEndian)
    assert dataset_offset(data) == len(data) - len(body)
    assert dataset_offset(body) == 0


def _nested(depth: int, *, defined: bool, implicit: bool = False) -> bytes:
    """A Content Sequence nested ``depth`` deep, with defined or undefined lengths, from raw bytes."""
    import struct

    leaf = (
        struct.pack("<HH", 0x0040, 0xA040)
        + (struct.pack("<I", 4) if implicit else b"CS" + struct.pack("<H", 4))
        + b"TEXT"
    )
    body = leaf
    for _ in range(depth):
        if defined:
            item = struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body
            header = struct.pack("<HH", 0x0040, 0xA730)
            header += (
                struct.pack("<I", len(item)) if implicit else b"SQ\x00\x00" + struct.pack("<I", len(item))
            )
            body = header + item
        else:
            item = (
                struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
                + body
                + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
            )
            header = struct.pack("<HH", 0x0040, 0xA730)
            header += (
                struct.pack("<I", 0xFFFFFFFF) if implicit else b"SQ\x00\x00" + struct.pack("<I", 0xFFFFFFFF)
            )
            body = header + item + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return body


@pytest.mark.parametrize("defined", [True, False])
@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_one_nesting_limit_for_defined_and_undefined_lengths(defined: bool, syntax: str) -> None:
    implicit = syntax == ImplicitVRLittleEndian
    check_complete(_nested(20, defined=defined, implicit=implicit), syntax)
    with pytest.raises(InvalidInstance, match="nested too deeply"):
        check_complete(_nested(200, defined=defined, implicit=implicit), syntax)


def test_file_meta_elements_inside_the_data_set_are_refused() -> None:
    import struct

    uid = b"1.2.840.10008.1.2\x00"
    inside = struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", len(uid)) + uid
    with pytest.raises(InvalidInstance, match="0002"):
        check_complete(inside + _nested(1, defined=True), ExplicitVRLittleEndian)


def test_deflated_data_set_with_trailing_garbage_is_refused() -> None:
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = compressor.compress(_nested(2, defined=True)) + compressor.flush()
    check_complete(stream, DeflatedExplicitVRLittleEndian)
    check_complete(stream + b"\x00", DeflatedExplicitVRLittleEndian)  # the one pad byte to an even length
    with pytest.raises(InvalidInstance, match="trailing"):
        check_complete(stream + b"GARBAGE-GARBAGE", DeflatedExplicitVRLittleEndian)
