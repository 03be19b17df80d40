"""A sample study for the FHIR tests: instances on disk and in the index, a read report, its links."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy.orm import Session, sessionmaker

from gateway.align.model import Link
from gateway.fhir.mapping import (
    InstanceData,
    PatientData,
    Pdf,
    PublishInput,
    SeriesData,
    StudyData,
)
from gateway.index.models import Instance, Patient, Series, Study

STUDY_UID = "1.2.826.0.1.3680043.10.999.1"
TOKEN = "s3cret-token"


def write_ct(path: Path, sop_uid: str, series_uid: str, number: int) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "CT"
    ds.InstanceNumber = number
    ds.Rows, ds.Columns = 64, 64
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelData = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 2048).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def study_data(n: int = 6) -> StudyData:
    return StudyData(
        STUDY_UID,
        PatientData("PAT-42", "", "Invented^Person=试^验", "19800101", "F"),
        "ACC-42",
        "20260110",
        "093000",
        "CT CHEST",
        series=(
            SeriesData(
                f"{STUDY_UID}.2",
                2,
                "CT",
                "Chest",
                tuple(
                    InstanceData(f"{STUDY_UID}.2.{i}", "1.2.840.10008.5.1.4.1.1.2", i, 64, 64)
                    for i in range(1, n + 1)
                ),
            ),
        ),
    )


def document(
    text: str = "右肺上叶见结节（Se 2 Im 5）。余未见异常。", status: str | None = None
) -> dict[str, Any]:
    start = text.index("Se 2 Im 5") if "Se 2 Im 5" in text else 0
    refs = (
        [
            {
                "kind": "position",
                "raw": "Se 2 Im 5",
                "label": None,
                "number": None,
                "series": 2,
                "instance": 5,
                "start": start,
                "end": start + 9,
            }
        ]
        if "Se 2 Im 5" in text
        else []
    )
    return {
        "schema_version": "1.0",
        "source_kind": "pdf",
        "engine": {"name": "rapidocr", "version": "1.3.24"},
        "status": status,
        "pages": [],
        "figures": [],
        "warnings": [],
        "paragraphs": [
            {
                "index": 0,
                "text": text,
                "page": 1,
                "bbox": [0, 0, 1, 1],
                "section": "findings",
                "figure_refs": refs,
            }
        ],
    }


def links_for(doc: dict[str, Any]) -> tuple[Link, ...]:
    from gateway.align import InstanceInfo, align

    infos = [
        InstanceInfo(
            i.sop_instance_uid,
            i.sop_class_uid,
            s.series_instance_uid,
            s.number,
            i.number,
            rows=64,
            columns=64,
        )
        for s in study_data().series
        for i in s.instances
    ]
    return align(doc, infos).links


def publish_input(doc: dict[str, Any] | None = None, **kw: Any) -> PublishInput:
    """The seed publication; without ``structured_findings=True`` only the sentence Observations (the API
    and store tests count them); tests/fhir/test_fhir_findings.py turns the coded findings on."""
    doc = doc if doc is not None else document()
    kw.setdefault("structured_findings", False)
    return PublishInput(
        study=study_data(),
        base_url="http://testserver",
        document=doc,
        links=links_for(doc),
        pdf=Pdf(b"%PDF-1.4 test\n", "1.2.826.0.1.3680043.10.999.9"),
        **kw,
    )


def seed_index(sessions: sessionmaker[Session], tmp_path: Path) -> int:
    with sessions.begin() as session:
        patient = Patient(
            patient_id="PAT-42", issuer="", name="Invented^Person", birth_date="19800101", sex="F"
        )
        session.add(patient)
        session.flush()
        study = Study(
            study_instance_uid=STUDY_UID,
            patient_fk=patient.id,
            accession_number="ACC-42",
            study_date="20260110",
            study_time="093000",
            state="done",
            version=1,
        )
        session.add(study)
        session.flush()
        series = Series(
            series_instance_uid=f"{STUDY_UID}.2", study_fk=study.id, modality="CT", series_number=2
        )
        session.add(series)
        session.flush()
        for i in range(1, 7):
            uid = f"{STUDY_UID}.2.{i}"
            path = tmp_path / "dcm" / f"{i}.dcm"
            write_ct(path, uid, series.series_instance_uid, i)
            session.add(
                Instance(
                    sop_instance_uid=uid,
                    series_fk=series.id,
                    study_fk=study.id,
                    sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                    transfer_syntax_uid=ExplicitVRLittleEndian,
                    instance_number=i,
                    rows=64,
                    columns=64,
                    path=str(path),
                    size=1,
                    digest="0" * 64,
                )
            )
        return study.id
