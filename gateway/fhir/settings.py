"""Settings for alignment and FHIR publishing (the ``[fhir]`` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class FhirSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal["R4", "R5"] = Field(default="R4", description="R4 = 4.0.1 JSON; R5 = 5.0.0 JSON")
    timezone: str = Field(default="UTC", description="IANA zone of DICOM dates/times without an offset")
    anatomy_cues: bool = Field(
        default=True, description="low-confidence series links from anatomy/window cues"
    )
    figure_min_score: float = Field(
        default=0.45, ge=-1, le=1, description="least similarity for a figure link"
    )
    figure_margin: float = Field(
        default=0.012, ge=0, le=1, description="how far the best instance must beat the runner-up"
    )
    figure_shortlist: int = Field(default=8, ge=2, le=100, description="instances compared at full detail")
    figure_fidelity: float = Field(
        default=0.95, ge=0, le=1, description="least share of a figure's structure its match must explain"
    )
    figure_foreign_fidelity: float = Field(
        default=0.96, ge=0, le=1, description="the same, when words near it speak of a prior or outside study"
    )
    figure_foreign: Literal["unresolved", "verify"] = Field(
        default="unresolved",
        description="a figure whose sentence or caption speaks of a prior or outside study: unresolved, or "
        "linked only above figure_foreign_fidelity",
    )
    figure_neighbour_margin: float = Field(
        default=0.1, ge=0, description="an adjacent slice whose residual is not this share larger ties"
    )
    structured_findings: bool = Field(
        default=True,
        description="coded finding and recommendation Observations from the report sentences "
        "(docs/structured-findings.md)",
    )
    max_refs_per_sentence: int = Field(default=20, ge=1, description="references linked per sentence")
    max_refs_per_document: int = Field(default=500, ge=1, description="references linked per report")
    thumbnail_size: int = Field(default=512, ge=16, le=4096, description="default longest side of images")
    page_size: int = Field(default=20, ge=1, le=1000, description="search results per page without _count")
    max_page_size: int = Field(default=200, ge=1, le=5000)
    patient_id_system: str = Field(
        default="urn:gateway:patient-id",
        description="Patient.identifier.system when IssuerOfPatientID is empty or not in the site table"
        " (mappings/identifier_systems.yaml); set it to the site's MRN namespace URI",
    )
    accession_system: str = Field(
        default="urn:gateway:accession",
        description="system of accession identifiers whose issuer is not in the site table",
    )
    organization_name: str = Field(
        default="Radiology",
        description="DiagnosticReport.performer and Provenance onBehalfOf when the report instance names"
        " no organization (VerifyingOrganization, InstitutionName)",
    )
    audit_durable: bool = Field(
        default=False,
        description="commit each audit row to disk before answering (about 10 ms a request); otherwise it"
        " is committed without waiting for the disk, and an OS crash or power loss may lose the last rows",
    )
    audit_token: SecretStr | None = Field(
        default=None,
        description="bearer token of auditors: the only one that may read AuditEvent (none: nobody may)",
    )
