"""Index operations: recording instances (upserts, reopening a study) and listing studies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicom.attributes import InstanceAttributes, extract_attributes
from gateway.index.models import Document, Instance, Patient, Series, Study
from gateway.index.repo import find_instance, list_studies, record_instance

T0 = dt.datetime(2024, 1, 2, 10, 0, tzinfo=dt.UTC)


def record(
    sessions: sessionmaker[Session],
    attrs: InstanceAttributes,
    *,
    now: dt.datetime = T0,
    digest: str = "0" * 64,
    size: int = 100,
) -> Any:
    with sessions.begin() as session:
        return record_instance(
            session,
            attrs,
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            path=f"/data/{attrs.sop_instance_uid}.dcm",
            size=size,
            digest=digest,
            calling_ae="MODALITY",
            now=now,
        )


class TestRecordInstance:
    def test_first_instance_creates_patient_study_series(
        self, sessions: sessionmaker[Session], make_instance: Callable[..., Dataset]
    ) -> None:
        attrs = extract_attributes(make_instance("ct", patient_id="P1", accession="A1"))
        result = record(sessions, attrs)
        assert result.new_instance and not result.reopened
        with sessions() as session:
            study = session.scalars(select(Study)).one()
            assert study.id == result.study_fk
            assert study.study_instance_uid == attrs.study_instance_uid
            assert (study.state, study.version, study.accession_number) == ("receiving", 0, "A1")
            assert study.last_received_at == T0
            assert study.patient.patient_id == "P1"
            assert study.patient.name == "Doe^Jane"
            series = session.scalars(select(Series)).one()
            assert (series.series_instance_uid, series.modality) == (attrs.series_instance_uid, "CT")
            row = find_instance(session, attrs.sop_instance_uid)
            assert row is not None
            assert (row.rows, row.columns, row.window_center, row.window_width) == (8, 8, 40.0, 400.0)
            assert row.received_at == T0
            assert row.received_at.tzinfo is not None

    def test_accession_issuer_is_recorded(
        self, sessions: sessionmaker[Session], make_instance: Callable[..., Dataset]
    ) -> None:
        """IssuerOfAccessionNumberSequence: the local namespace, else the universal entity ID."""
        from pydicom.dataset import Dataset as Item
        from pydicom.sequence import Sequence

        local, universal = Item(), Item()
        local.LocalNamespaceEntityID = "EXAMPLE-HOSPITAL"
        local.UniversalEntityID = "2.16.840.1.113883.3.9999"
        universal.UniversalEntityID = "2.16.840.1.113883.3.9999"
        universal.UniversalEntityIDType = "ISO"
        seen = []
        for item in (local, universal, None):
            ds = make_instance("ct", accession="A1")
            if item is not None:
                ds.IssuerOfAccessionNumberSequence = Sequence([item])
            seen.append(extract_attributes(ds).accession_issuer)
        assert seen == ["EXAMPLE-HOSPITAL", "2.16.840.1.113883.3.9999", None]
        ds = make_instance("ct", accession="A1")
        ds.IssuerOfAccessionNumberSequence = Sequence([local])
        record(sessions, extract_attributes(ds))
        with sessions() as session:
            assert session.scalars(select(Study)).one().accession_issuer == "EXAMPLE-HOSPITAL"

    def test_same_sop_instance_updates_in_place(
        self, sessions: sessionmaker[Session], make_instance: Callable[..., Dataset]
    ) -> None:
        attrs = extract_attributes(make_instance("ct"))
        first = record(sessions, attrs, digest="a" * 64)
        second = record(sessions, attrs, digest="b" * 64, size=200, now=T0 + dt.timedelta(seconds=5))
        assert first.new_instance and not second.new_instance
        assert first.study_fk == second.study_fk
        with sessions() as session:
            rows = session.scalars(select(Instance)).all()
            assert len(rows) == 1
            assert (rows[0].digest, rows[0].size) == ("b" * 64, 200)
            for model in (Patient, Study, Series):
                assert session.scalar(select(func.count()).select_from(model)) == 1

    def test_instances_of_one_study_share_rows(
        self, sessions: sessionmaker[Session], make_instance: Callable[..., Dataset]
    ) -> None:
        study, series = generate_uid(), generate_uid()
        for _ in range(3):
            record(sessions, extract_attributes(make_instance("ct", study_uid=study, series_uid=series)))
        record(sessions, extract_attributes(make_instance("pdf", study_uid=study)))
        with sessions() as session:
            assert session.scalar(select(func.count(Instance.id))) == 4
            assert session.scalar(select(func.count(Series.id))) == 2
            assert session.scalar(select(func.count(Study.id))) == 1
            assert session.scalar(select(func.count(Patient.id))) == 1

    def test_same_patient_id_other_issuer_is_another_patient(
        self, sessions: sessionmaker[Session], make_instance: Callable[..., Dataset]
    ) -> None:
        a = make_instance("ct", patient_id="P1")
        b = make_instance("ct", patient_id="P1")
        b.IssuerOfPatientID = "OTHER-HOSPITAL"
        record(sessions, extract_attributes(a))
        record(sessions, extract_attributes(b))
        with sessions() as session:
            issuers = sorted(session.scalars(select(Patient.issuer)))
        assert issuers == ["", "OTHER-HOSPITAL"]

    def test_late_instance_reopens_a_stable_study(
        self, sessions: sessionmaker[Session], make_instance: Callable[..., Dataset]
    ) -> None:
        study_uid = generate_uid()
        record(sessions, extract_attributes(make_instance("ct", study_uid=study_uid)))
        with sessions.begin() as session:
            study = session.scalars(select(Study)).one()
            study.state, study.version, study.stage, study.state_reason = "done", 1, "publish", "ok"
        later = T0 + dt.timedelta(minutes=10)
        result = record(sessions, extract_attributes(make_instance("sr", study_uid=study_uid)), now=later)
        assert result.reopened
        with sessions() as session:
            study = session.scalars(select(Study)).one()
            assert (study.state, study.stage, study.state_reason) == ("receiving", None, None)
            assert study.version == 1  # the next stability bumps it
            assert study.last_received_at == later
        # a further instance while receiving does not count as a reopening
        again = record(sessions, extract_attributes(make_instance("ct", study_uid=study_uid)), now=later)
        assert not again.reopened

    def test_study_fields_are_filled_not_overwritten(
        self, sessions: sessionmaker[Session], make_instance: Callable[..., Dataset]
    ) -> None:
        study_uid = generate_uid()
        first = make_instance("ct", study_uid=study_uid, accession="FIRST")
        del first.StudyDescription
        record(sessions, extract_attributes(first))
        second = make_instance("ct", study_uid=study_uid, accession="SECOND")
        second.StudyDescription = "Chest"
        record(sessions, extract_attributes(second))
        with sessions() as session:
            study = session.scalars(select(Study)).one()
        assert (study.accession_number, study.description) == ("FIRST", "Chest")


class TestListStudies:
    def test_json_fields(
        self, sessions: sessionmaker[Session], make_instance: Callable[..., Dataset]
    ) -> None:
        study_uid = generate_uid()
        for _ in range(3):
            record(sessions, extract_attributes(make_instance("ct", study_uid=study_uid, patient_id="P9")))
        with sessions.begin() as session:
            study = session.scalars(select(Study)).one()
            study.version = 1  # stable once: its first pipeline run extracted these
            for stage, key in (("extract", "report.pdf"), ("extract", "report.txt"), ("read", "doc.json")):
                session.add(
                    Document(
                        study_fk=study.id,
                        stage=stage,
                        key=key,
                        kind="report",
                        study_version=1,
                        media_type="application/json",
                    )
                )
        with sessions() as session:
            [summary] = list_studies(session)
        data = summary.as_json()
        for key in (
            "study_instance_uid",
            "patient_id",
            "accession_number",
            "state",
            "instances",
            "documents",
            "updated_at",
        ):
            assert key in data
        assert data["study_instance_uid"] == study_uid
        assert data["patient_id"] == "P9"
        assert data["accession_number"] == "ACC0001"
        assert data["state"] == "receiving"
        assert data["instances"] == 3
        assert data["documents"] == 2  # extracted report documents only
        assert dt.datetime.fromisoformat(data["updated_at"]) == T0

    def test_newest_first_and_empty_counts(
        self, sessions: sessionmaker[Session], make_instance: Callable[..., Dataset]
    ) -> None:
        old = make_instance("ct")
        new = make_instance("ct")
        record(sessions, extract_attributes(old), now=T0)
        record(sessions, extract_attributes(new), now=T0 + dt.timedelta(hours=1))
        with sessions() as session:
            studies = list_studies(session)
            assert [s.study_instance_uid for s in studies] == [new.StudyInstanceUID, old.StudyInstanceUID]
            assert [s.documents for s in studies] == [0, 0]
            assert list_studies(session, limit=1)[0].study_instance_uid == new.StudyInstanceUID

    def test_empty_index(self, sessions: sessionmaker[Session]) -> None:
        with sessions() as session:
            assert list_studies(session) == []
