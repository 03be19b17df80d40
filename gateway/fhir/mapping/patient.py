"""Patient from the DICOM Patient module (PS3.3 C.7.1.1); US Core Patient."""

from __future__ import annotations

from gateway.fhir import ids
from gateway.fhir.codes import code_map
from gateway.fhir.mapping.common import DATA_ABSENT_REASON, _human_names, dicom_date
from gateway.fhir.mapping.inputs import PatientData, Resource


def patient_resource(p: PatientData) -> Resource:
    ident: Resource = {"use": "usual", "type": {"coding": [code_map().coding("mrn_type")]}}
    if p.system:
        ident["system"] = p.system
    ident["value"] = p.patient_id or "unknown"
    if p.issuer:
        ident["assigner"] = {"display": p.issuer}
    res: Resource = {
        "resourceType": "Patient",
        "id": ids.patient_id(p.patient_id, p.issuer),
        "identifier": [ident],
    }
    # US Core Patient name 1..* (us-core-6): a family or given name, else a data-absent-reason.
    res["name"] = _human_names(p.name) or [
        {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "unknown"}]}
    ]
    gender = {"M": "male", "F": "female", "O": "other"}.get((p.sex or "").upper())
    res["gender"] = gender or "unknown"
    birth = dicom_date(p.birth_date)
    if birth:
        res["birthDate"] = birth
    return res
