"""Our File Meta encoder writes what pydicom writes, and the files read back."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dsutils import encode

from gateway.dicom.part10 import file_meta, part10


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit])
@pytest.mark.parametrize("sop", ["1.2.3", "1.2.34"])  # odd and even lengths need different padding
def test_meta_matches_pydicom(ts: str, sop: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = PYNETDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = PYNETDICOM_IMPLEMENTATION_VERSION
    expected = io.BytesIO()
    write_file_meta_info(expected, meta, enforce_standard=True)
    assert file_meta("1.2.840.10008.5.1.4.1.1.2", sop, ts) == expected.getvalue()


def test_part10_file_reads_back(make_instance) -> None:
    ds = make_instance("ct")
    data_set = encode(ds, False, True)  # explicit VR little endian, as a peer would send it
    assert data_set is not None
    data = part10(data_set, ds.SOPClassUID, ds.SOPInstanceUID, ExplicitVRLittleEndian)
    back = pydicom.dcmread(io.BytesIO(data))
    assert back.SOPInstanceUID == ds.SOPInstanceUID
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert back.PatientID == ds.PatientID
    assert data.endswith(data_set)  # the data set is kept byte for byte
