"""Pixel bombs: dimensions are checked before decoding; baseline JPEG is decoded reduced, the rest refused."""

from __future__ import annotations

import io
import resource

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from gateway.imaging import ImagingError, render_dataset, stored_values


def _secondary_capture_jpeg(size: int, *, rows: int | None = None) -> Dataset:
    """A grey baseline JPEG Secondary Capture of ``size``×``size`` pixels (a few hundred KB)."""
    image = Image.new("L", (size, size), 0)
    image.paste(200, (size // 4, size // 4, size // 2, size // 2))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=50)
    ds = Dataset()
    ds.Rows = ds.Columns = rows if rows is not None else size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return ds


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_large_baseline_jpeg_is_decoded_reduced_within_the_limit() -> None:
    ds = _secondary_capture_jpeg(8000)
    before = _peak_rss_mib()
    out = render_dataset(ds, max_pixels=4_000_000)
    assert out.shape[0] * out.shape[1] <= 4_000_000
    assert out.shape[0] >= 1000  # reduced by a power of two, not thrown away
    assert out[out.shape[0] * 3 // 8, out.shape[1] * 3 // 8] > 150  # the bright square survived
    # A full decode costs 64 MB for the frame and 512 MB as float64 for the LUTs; reduced, about 40 MB.
    assert _peak_rss_mib() - before < 96


def test_uncompressed_image_above_the_limit_is_refused_before_decoding() -> None:
    ds = Dataset()
    ds.Rows = ds.Columns = 12000
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.zeros(16, dtype=np.uint8).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with pytest.raises(ImagingError, match="pixel limit"):
        render_dataset(ds, max_pixels=50_000_000)
    with pytest.raises(ImagingError, match="pixel limit"):
        stored_values(ds, max_pixels=50_000_000)


def test_jpeg_larger_than_its_declared_rows_and_columns_is_refused() -> None:
    ds = _secondary_capture_jpeg(3000, rows=100)
    with pytest.raises(ImagingError, match="JPEG frame"):
        render_dataset(ds, max_pixels=50_000_000)
