from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless, generate_uid

from gateway.findings.images import (
    ImageDecodeError,
    ViewInfo,
    choose_views,
    load_image,
    read_dicom,
    read_png,
    resize,
)
from gateway.findings.synthetic import write_dicom


def _ramp() -> np.ndarray:
    return np.tile(np.linspace(0, 255, 64).round().astype(np.uint8), (32, 1))  # 32 x 64, dark to bright


def _dcm(tmp_path: Path, pixels: np.ndarray, **kwargs: object) -> Path:
    path = tmp_path / f"{generate_uid()}.dcm"
    write_dicom(
        path, pixels, view_position=kwargs.pop("view", "PA"), study_uid="1.2.3", patient_id="P", **kwargs
    )  # type: ignore[arg-type]
    return path


def test_monochrome2_scaled_to_unit(tmp_path: Path) -> None:
    unit, info, uid = read_dicom(_dcm(tmp_path, _ramp()))
    assert unit.dtype == np.float32 and unit.min() == 0.0 and unit.max() == 1.0
    assert unit[0, 0] < unit[0, -1]
    assert info.view_position == "PA" and info.aspect == 2.0 and uid


def test_monochrome1_is_inverted_back(tmp_path: Path) -> None:
    plain = read_dicom(_dcm(tmp_path, _ramp()))[0]
    inverted = read_dicom(_dcm(tmp_path, _ramp(), monochrome1=True))[0]
    np.testing.assert_allclose(plain, inverted, atol=1e-6)


def test_modality_lut_then_window(tmp_path: Path) -> None:
    values = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))
    rescaled = read_dicom(_dcm(tmp_path, values, rescale=(2.0, -1000.0)))[0]
    np.testing.assert_allclose(rescaled, read_dicom(_dcm(tmp_path, values))[0], atol=2e-3)
    # A narrow window saturates both ends: values below and above it become 0 and 1.
    windowed = read_dicom(_dcm(tmp_path, values, window=(2048.0, 512.0)))[0]
    assert windowed[0, 0] == 0.0 and windowed[0, -1] == 1.0
    assert 0.0 < windowed[0, 32] < 1.0


def test_compressed_transfer_syntax(tmp_path: Path) -> None:
    pixels = _ramp()
    path = _dcm(tmp_path, pixels, transfer_syntax=JPEG2000Lossless)
    np.testing.assert_allclose(read_dicom(path)[0], read_dicom(_dcm(tmp_path, pixels))[0], atol=1e-6)


def test_png_and_dicom_give_the_same_input(tmp_path: Path) -> None:
    pixels = _ramp()
    Image.fromarray(pixels).save(tmp_path / "x.png")
    from_png = resize(read_png(tmp_path / "x.png"), 16)
    from_dicom = resize(load_image(_dcm(tmp_path, pixels)), 16)
    assert from_png.shape == (16, 16) and from_png.dtype == np.uint8
    assert np.abs(from_png.astype(int) - from_dicom.astype(int)).max() <= 1


def test_unreadable_files_raise(tmp_path: Path) -> None:
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"junk")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ImageDecodeError):
        read_dicom(tmp_path / "bad.dcm")
    with pytest.raises(ImageDecodeError):
        read_png(tmp_path / "bad.png")


@pytest.mark.parametrize(
    ("infos", "expected"),
    [
        ([ViewInfo("LL"), ViewInfo("PA")], (1, 0)),
        ([ViewInfo("LATERAL"), ViewInfo("AP")], (1, 0)),
        ([ViewInfo(None, "CHEST LAT"), ViewInfo(None, "CHEST PA")], (1, 0)),
        ([ViewInfo(None, None, 0.8), ViewInfo(None, None, 1.2)], (1, 0)),  # the taller one is lateral
        ([ViewInfo(), ViewInfo()], (0, 1)),  # nothing known: the order
        ([ViewInfo("LL"), ViewInfo(), ViewInfo()], (1, 0)),
        ([ViewInfo("PA")], (0, 0)),
    ],
)
def test_choose_views(infos: list[ViewInfo], expected: tuple[int, int]) -> None:
    assert choose_views(infos) == expected
