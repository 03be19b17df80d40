"""Rendering: Modality LUT, window (PS3.3 C.11.2.1.2), MONOCHROME1 inversion, PNG/JPEG thumbnails."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from gateway.imaging import GreyValues, ImagingError, encode_image, render_dataset, stored_values


def _ct(photometric: str = "MONOCHROME2", window: bool = True) -> Dataset:
    ds = Dataset()
    ds.Rows, ds.Columns = 4, 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    if window:
        ds.WindowCenter, ds.WindowWidth = 40, 400
    # HU: -1024 (air), -160 (window bottom), 40 (centre), 240 (window top), 1000 (bone)
    hu = np.array([-1024, -160, 40, 240] * 3 + [1000] * 4, dtype=np.int32).reshape(4, 4)
    ds.PixelData = (hu + 1024).astype(np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_window_from_dataset() -> None:
    out = render_dataset(_ct())
    assert out.dtype == np.uint8
    assert out[0, 0] == 0 and out[0, 3] == 255 and out[3, 0] == 255
    assert 120 <= out[0, 2] <= 135


def test_window_override_and_monochrome1() -> None:
    wide = render_dataset(_ct(), window=(0, 4000))
    assert 0 < wide[0, 0] < wide[3, 0] < 255
    inverted = render_dataset(_ct("MONOCHROME1"))
    assert inverted[0, 0] == 255 and inverted[3, 0] == 0


def test_without_window_the_range_is_stretched() -> None:
    out = render_dataset(_ct(window=False))
    assert out.min() == 0 and out.max() == 255


def test_no_pixel_data() -> None:
    with pytest.raises(ImagingError):
        render_dataset(Dataset())


@pytest.mark.parametrize(("fmt", "magic"), [("png", b"\x89PNG"), ("jpeg", b"\xff\xd8")])
def test_encode_with_thumbnail(fmt: str, magic: bytes) -> None:
    image = (np.arange(300 * 200) % 256).astype(np.uint8).reshape(200, 300)
    data = encode_image(image, fmt, max_size=64)  # type: ignore[arg-type]
    assert data.startswith(magic)
    assert Image.open(io.BytesIO(data)).size == (64, 43)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_stored_values_show_under_any_window_as_render_does(photometric: str) -> None:
    ds = _ct(photometric)
    values = stored_values(ds)
    assert values is not None and values.values.dtype == np.float32
    assert values.values[0, 0] == -1024 and values.values[3, 0] == 1000  # Modality LUT applied: HU
    for window in [(40.0, 400.0), (-600.0, 1500.0)]:
        assert np.array_equal(values.windowed(*window), render_dataset(ds, window=window))


def test_grey_values_are_two_dimensional() -> None:
    with pytest.raises(ValueError, match="2-D"):
        GreyValues(np.zeros((2, 2, 3), dtype=np.float32))
