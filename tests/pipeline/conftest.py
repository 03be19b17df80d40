from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicom.attributes import InstanceAttributes
from gateway.index.models import Study
from gateway.index.repo import record_instance
from gateway.settings import Settings

# test_publish_short_transactions stores over DICOM with the SCU helper of tests/dicom/test_index_busy.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dicom"))


@pytest.fixture
def pipeline_settings(tmp_path: Path, index_url: str) -> Settings:
    return Settings.load(
        None,
        data_dir=tmp_path / "data",
        database_url=index_url,
        stable_age=0.2,
        pipeline={
            "lease_seconds": 1.0,
            "max_attempts": 3,
            "backoff_base": 0.05,
            "backoff_max": 0.2,
            "poll_interval": 0.05,
        },
    )


def attrs(study_uid: str, n: int = 1, *, sop_class: str = "1.2.840.10008.5.1.4.1.1.2") -> InstanceAttributes:
    return InstanceAttributes(
        patient_id="PAT-1",
        issuer_of_patient_id="",
        patient_name="Invented^Person",
        patient_birth_date=None,
        patient_sex=None,
        study_instance_uid=study_uid,
        accession_number="ACC1",
        study_id=None,
        study_date="20260101",
        study_time=None,
        referring_physician=None,
        study_description=None,
        series_instance_uid=f"{study_uid}.1",
        modality="CT",
        body_part=None,
        laterality=None,
        series_description=None,
        series_number=1,
        sop_class_uid=sop_class,
        sop_instance_uid=f"{study_uid}.1.{n}",
        instance_number=n,
        view_position=None,
        image_laterality=None,
        rows=None,
        columns=None,
        window_center=None,
        window_width=None,
    )


@pytest.fixture
def add_instance(sessions: sessionmaker[Session]) -> Callable[..., Study]:
    def _add(study_uid: str, n: int = 1, **kwargs: object) -> Study:
        with sessions.begin() as session:
            record_instance(
                session,
                attrs(study_uid, n, **kwargs),
                transfer_syntax_uid="1.2.840.10008.1.2.1",
                path=f"/nonexistent/{n}.dcm",
                size=1,
                digest="0" * 64,
                calling_ae="TEST",
            )
        with sessions() as session:
            return session.query(Study).filter_by(study_instance_uid=study_uid).one()

    return _add
