"""One pixel limit, ``imaging.max_pixels``: the same typed setting bounds rendering for /images and
DICOMweb, the features of the extract and align stages, and (unless set apart) the report reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from gateway.align.features import reuse_or_compute
from gateway.dicomweb import wado
from gateway.settings import Settings


def _image(path: Path, side: int) -> Path:
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.full((side, side), 100, dtype=np.uint8).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


def test_the_reader_follows_the_imaging_limit_unless_set_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_IMAGING__MAX_PIXELS", "2000000")
    settings = Settings.load(None)
    assert settings.imaging.max_pixels == 2_000_000
    assert settings.reading.max_image_pixels == 2_000_000
    apart = Settings.load(None, reading={"max_image_pixels": 5_000_000})
    assert (apart.imaging.max_pixels, apart.reading.max_image_pixels) == (2_000_000, 5_000_000)
    with pytest.raises(ValueError, match="max_pixels"):
        Settings.load(None, imaging={"max_pixels": 1000})


def test_rendering_for_images_refuses_above_the_setting(tmp_path: Path) -> None:
    path = _image(tmp_path / "a.dcm", 300)
    options = wado.render_options({}, "image/png", 90)
    settings = Settings.load(None, imaging={"max_pixels": 50_000})
    with pytest.raises(wado.NotAcceptable, match="pixel limit"):
        wado.rendered(path, options, max_pixels=settings.imaging.max_pixels)
    assert wado.rendered(path, options, max_pixels=Settings.load(None).imaging.max_pixels)[:4] == b"\x89PNG"


def test_matching_features_skip_an_image_above_the_setting(tmp_path: Path) -> None:
    path = _image(tmp_path / "a.dcm", 300)
    kept, skipped = reuse_or_compute([("1.2.3", "d", str(path))], {}, max_pixels=50_000)
    assert kept == [] and "pixel limit" in skipped[0][1]
    kept, skipped = reuse_or_compute([("1.2.3", "d", str(path))], {}, max_pixels=100_000)
    assert len(kept) == 1 and skipped == []
