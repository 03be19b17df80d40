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
