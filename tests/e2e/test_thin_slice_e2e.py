"""A thin-slice CT whose report is a scanned, image-only PDF, pushed with storescu; an EMR follows the figure.

The study comes from the aligner benchmark's generator (``benchmarks/align_suite.py``, a tiny thin-slice
case): 0.625 mm slices, where the figure's source and its neighbours look alike, and a report that was
printed and scanned, so that its figures exist only as regions of the page. The gateway must OCR the page,
cut the figure out, match it, and publish the link; fhirpy then follows the sentence's Observation to the
Media of the figure's SOP Instance UID (or, if the link names tied neighbours, to one of them).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from fhirpy import SyncFHIRClient
from harness import media_uids
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parents[2]
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"


def _suite() -> ModuleType:
    spec = importlib.util.spec_from_file_location("align_suite_e2e", ROOT / "benchmarks" / "align_suite.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _encapsulate(pdf: bytes, like: Dataset, out: Path) -> None:
    """The scanned report as an Encapsulated PDF instance of the same study (PS3.3 A.45.1)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = ENCAPSULATED_PDF, ds.file_meta.MediaStorageSOPInstanceUID
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
    ):
        if keyword in like:
            setattr(ds, keyword, like.get(keyword))
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "DOC", 90, 1
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle = "Radiology report (scanned)"
    ds.BurnedInAnnotation = "YES"
    ds.ContentDate, ds.ContentTime = "20250101", "120000"
    ds.ConceptNameCodeSequence = []
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.save_as(out, enforce_file_format=True)


@pytest.mark.slow
def test_figure_on_a_scanned_report_of_a_thin_slice_ct_reaches_the_emr(served, tmp_path: Path) -> None:
    suite = _suite()
    folder = suite.write_case(tmp_path / "cases", 4, 7, tiny=True, scanned=True)
    truth = json.loads((folder / "truth.json").read_text())
    assert truth["kind"] == "ct-thin"
    images = sorted((folder / "dicom").rglob("*.dcm"))
    report = tmp_path / "report-scan.dcm"
    _encapsulate((folder / truth["scanned_report"]).read_bytes(), dcmread(images[0]), report)
    served.storescu(*images, report)

    study_uid = truth["study_instance_uid"]
    deadline = time.monotonic() + 300
    state = None
    while time.monotonic() < deadline:
        rows = [s for s in served.studies() if s["study_instance_uid"] == study_uid]
        state = rows[0]["state"] if rows else None
        if state in ("done", "failed"):
            break
        time.sleep(0.5)
    assert state == "done", (state, served.log.read_text()[-4000:])

    figures = [r for r in truth["references"] if r["method"] == "figure" and r["sop_instance_uid"]]
    assert figures, "the case has a figure with a true source"
    client = SyncFHIRClient(f"{served.base}/fhir", authorization=f"Bearer {served.token}")
    imaging = client.resources("ImagingStudy").search(identifier=f"urn:dicom:uid|urn:oid:{study_uid}").fetch()
    [report_resource] = [
        r
        for r in client.resources("DiagnosticReport")
        .search(patient=imaging[0]["subject"]["reference"])
        .fetch()
        if r["status"] != "preliminary"
    ]
    observations = [
        client.reference(reference=r["reference"]).to_resource() for r in report_resource["result"]
    ]
    linked = 0
    for ref in figures:
        accepted = {ref["sop_instance_uid"], *ref["neighbours"]}
        raw = ref["raw"].replace(" ", "")
        for observation in observations:
            text = observation.get("valueString", "").replace(" ", "")
            if raw in text and media_uids(client, observation.get("derivedFrom", [])):
                assert media_uids(client, observation.get("derivedFrom", [])) & accepted, (ref, observation)
                linked += 1
    assert linked >= 1, (figures, [o.get("valueString") for o in observations])
