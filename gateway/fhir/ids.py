"""Stable resource ids: the same study, report or instance always maps to the same id.

Ids are UUID-5 in a namespace of the gateway, so that a re-sent report updates a resource rather than adding
one, and so that ids carry no patient data (a FHIR id may appear in URLs and logs).
"""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:gateway:fhir")


def stable_id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def patient_id(patient_id: str, issuer: str) -> str:
    return stable_id("Patient", issuer, patient_id)


def imaging_study_id(study_uid: str) -> str:
    return stable_id("ImagingStudy", study_uid)


def report_id(study_uid: str) -> str:
    return stable_id("DiagnosticReport", study_uid)


def draft_report_id(study_uid: str) -> str:
    return stable_id("DiagnosticReport", study_uid, "draft")


def service_request_id(study_uid: str, accession: str) -> str:
    return stable_id("ServiceRequest", study_uid, accession)


def observation_id(study_uid: str, source: str, paragraph: int, sentence: int) -> str:
    return stable_id("Observation", study_uid, source, str(paragraph), str(sentence))


def media_id(sop_instance_uid: str) -> str:
    return stable_id("Media", sop_instance_uid)


def selection_id(study_uid: str, series_uid: str, sop_instance_uid: str | None) -> str:
    return stable_id("ImagingSelection", study_uid, series_uid, sop_instance_uid or "")


def binary_id(study_uid: str, kind: str) -> str:
    return stable_id("Binary", study_uid, kind)


def device_id(name: str, version: str) -> str:
    return stable_id("Device", name, version)


def provenance_id(target_id: str) -> str:
    return stable_id("Provenance", target_id)


def dicomweb_endpoint_id() -> str:
    return stable_id("Endpoint", "dicomweb")
