"""Stage ``publish``: versions stored; an unchanged re-run adds none; an amended report adds one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from test_stage_align import STUDY, put_read_report, seed

from gateway.fhir.ids import report_id
from gateway.fhir.validate import validate_resource
from gateway.index.models import FhirResource
from gateway.pipeline.stage import StageContext
from gateway.pipeline.stages import align as align_stage
from gateway.pipeline.stages import publish as publish_stage
from gateway.settings import Settings


def _report_versions(sessions: sessionmaker[Session]) -> list[tuple[int, str, bool]]:
    with sessions() as session:
        rows = session.scalars(
            select(FhirResource)
            .where(
                FhirResource.resource_type == "DiagnosticReport", FhirResource.resource_id == report_id(STUDY)
            )
            .order_by(FhirResource.version_id)
        )
        return [(r.version_id, str(r.body["status"]), r.is_current) for r in rows]


def test_publish_versions(sessions: sessionmaker[Session], tmp_path: Path, settings: Settings) -> None:
    study = seed(sessions, tmp_path)
    put_read_report(settings, sessions, study, "右肺上叶见结节（Se 2 Im 5）。另见图1。")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4 sample\n")
    extract = StageContext(settings=settings, sessions=sessions, study_version=1, stage="extract")
    extract.put_document(
        study, key="report.pdf", kind="report-pdf", media_type="application/pdf", data=pdf.read_bytes()
    )

    def run(version: int) -> dict[str, object]:
        align_stage.run(
            StageContext(settings=settings, sessions=sessions, study_version=version, stage="align"), study
        )
        return publish_stage.run(
            StageContext(settings=settings, sessions=sessions, study_version=version, stage="publish"), study
        )

    first = run(1)
    assert first["created"] == first["resources"] and first["updated"] == 0
    assert _report_versions(sessions) == [(1, "final", True)]
    with sessions() as session:
        for row in session.scalars(select(FhirResource)):
            validate_resource(row.body)
        media = session.scalars(select(FhirResource).where(FhirResource.resource_type == "Media")).all()
        assert {m.body["identifier"][0]["value"] for m in media} == {
            f"urn:oid:{STUDY}.2.5",
            f"urn:oid:{STUDY}.2.3",
        }

    again = run(1)  # a retried job on the same content
    assert again["created"] == again["updated"] == 0
    assert _report_versions(sessions) == [(1, "final", True)]

    # The study is reopened (version 2) and the PACS re-sends an amended report.
    study.version = 2
    put_read_report(settings, sessions, study, "右肺上叶见结节（Se 2 Im 5），较前增大。另见图1。")
    extract2 = StageContext(settings=settings, sessions=sessions, study_version=2, stage="extract")
    extract2.put_document(
        study, key="report.pdf", kind="report-pdf", media_type="application/pdf", data=b"%PDF-1.4 amended\n"
    )
    third = run(2)
    assert third["updated"] >= 1
    assert _report_versions(sessions) == [(1, "final", False), (2, "amended", True)]


def test_placeholder_dates_publish_with_a_warning(
    sessions: sessionmaker[Session], tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.index.models import Patient, Study

    study = seed(sessions, tmp_path)
    with sessions.begin() as session:
        row = session.get(Study, study.id)
        assert row is not None
        row.study_date = "20261340"
        patient = session.get(Patient, row.patient_fk)
        assert patient is not None
        patient.birth_date = "00000000"
    with sessions() as session:
        study = session.get(Study, study.id)
    put_read_report(settings, sessions, study, "右肺上叶见结节（Se 2 Im 5）。")
    align_stage.run(StageContext(settings=settings, sessions=sessions, study_version=1, stage="align"), study)
    with caplog.at_level(logging.DEBUG):
        summary = publish_stage.run(
            StageContext(settings=settings, sessions=sessions, study_version=1, stage="publish"), study
        )
    assert _report_versions(sessions) == [(1, "final", True)]
    assert sorted(str(w).split()[0] for w in summary["warnings"]) == ["PatientBirthDate", "StudyDate"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "PatientBirthDate" in logged
    for secret in ("00000000", "20261340", "PAT-7", "Invented"):
        assert secret not in logged and secret not in str(summary)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_other_dates_come_from_each_series_first_instance(tmp_path: Path) -> None:
    """Series, then acquisition, then content date/time, skipping what a file lacks or cannot be read."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    paths = []
    for i, attrs in enumerate(
        (
            {"SeriesDate": "20260109", "SeriesTime": "0815", "ContentDate": "20260111"},
            {"AcquisitionDate": "20260108"},
        )
    ):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = generate_uid()
        for name, value in attrs.items():
            setattr(ds, name, value)
        path = tmp_path / f"{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(str(path))
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    found = publish_stage._other_dates([*paths, str(tmp_path / "junk.dcm"), str(tmp_path / "gone.dcm")])
    assert found == (("20260109", "0815"), ("20260108", None), ("20260111", None))


def test_accession_issuer_maps_to_its_identifier_system(
    sessions: sessionmaker[Session], tmp_path: Path, settings: Settings
) -> None:
    """IssuerOfAccessionNumberSequence → index → mappings/identifier_systems.yaml → Identifier.system."""
    from gateway.index.models import Study

    study = seed(sessions, tmp_path)
    with sessions.begin() as session:
        row = session.get(Study, study.id)
        assert row is not None and row.accession_number
        row.accession_issuer = "example-hospital"  # the table matches case-insensitively
    with sessions() as session:
        study = session.get(Study, study.id)
    put_read_report(settings, sessions, study, "右肺上叶见结节（Se 2 Im 5）。")
    align_stage.run(StageContext(settings=settings, sessions=sessions, study_version=1, stage="align"), study)
    publish_stage.run(
        StageContext(settings=settings, sessions=sessions, study_version=1, stage="publish"), study
    )
    with sessions() as session:
        report = session.scalars(
            select(FhirResource).where(
                FhirResource.resource_type == "DiagnosticReport", FhirResource.is_current.is_(True)
            )
        ).one()
    [acsn] = [
        i
        for i in report.body["identifier"]
        if any(c.get("code") == "ACSN" for c in i.get("type", {}).get("coding", []))
    ]
    assert acsn["system"] == "urn:oid:2.16.840.1.113883.3.9999.1.2"
