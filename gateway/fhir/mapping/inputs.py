"""What one publication of a study is built from: plain frozen values, no I/O."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway import __version__
from gateway.align.model import Link
from gateway.fhir.signoff import SignOff

Version = Literal["R4", "R5"]
Resource = dict[str, Any]
ALIGNER_DEVICE = ("gateway-align", __version__)


@dataclass(frozen=True)
class PatientData:
    patient_id: str
    issuer: str = ""
    name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    #: Identifier.system of the Patient ID (the issuer's URI from the site table, or the default).
    system: str | None = None


@dataclass(frozen=True)
class InstanceData:
    sop_instance_uid: str
    sop_class_uid: str
    number: int | None = None
    rows: int | None = None
    columns: int | None = None


@dataclass(frozen=True)
class SeriesData:
    series_instance_uid: str
    number: int | None = None
    modality: str | None = None
    description: str | None = None
    instances: tuple[InstanceData, ...] = ()


@dataclass(frozen=True)
class StudyData:
    study_instance_uid: str
    patient: PatientData
    accession_number: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    description: str | None = None
    referring_physician: str | None = None
    series: tuple[SeriesData, ...] = ()
    #: Identifier.system of the accession number (site table, or the default).
    accession_system: str | None = None
    #: Other (DA, TM) pairs of the study, in order of preference, for when StudyDate is missing or invalid:
    #: the SeriesDate/Time, AcquisitionDate/Time and ContentDate/Time of its image series.
    other_dates: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class Pdf:
    data: bytes
    report_sop_instance_uid: str | None = None


@dataclass(frozen=True)
class PublishInput:
    """Everything one publication of a study needs."""

    study: StudyData
    base_url: str
    document: dict[str, Any] | None = None
    links: tuple[Link, ...] = ()
    draft: dict[str, Any] | None = None
    pdf: Pdf | None = None
    timezone: str = "UTC"
    version: Version = "R4"
    issued: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    #: Who signed the report and when (see :mod:`gateway.fhir.signoff`); its time becomes ``issued``.
    signoff: SignOff = field(default_factory=SignOff)
    #: The performing organization when the report names none.
    organization: str = "Radiology"
    #: Coded finding Observations from the sentences (gateway/fhir/mapping/findings.py).
    structured_findings: bool = True
    #: ``(name as in signoff.interpreters, system, value)`` of each reader the site table identifies.
    practitioner_identifiers: tuple[tuple[str, str, str], ...] = ()
