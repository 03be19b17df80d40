"""A publication as :mod:`gateway.fhir.mapping` writes it (trimmed), for the pure ORU tests."""

from __future__ import annotations

import base64
import copy
from typing import Any

STUDY = "1.2.826.0.1.3680043.10.999.7"
PDF = b"%PDF-1.4 invented report\n"
ACSN = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}


def _media(n: int, url: str) -> dict[str, Any]:
    return {
        "resourceType": "Media",
        "id": f"m{n}",
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY}.2.{n}"}],
        "status": "completed",
        "content": {"contentType": "image/png", "url": url},
    }


def _observation(oid: str, code: str, display: str, text: str, media: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": text},
        "subject": {"reference": "Patient/p1"},
        "valueString": text,
        "derivedFrom": [{"reference": f"Media/{m}"} for m in media],
    }


def publication(status: str = "final", *, with_devices: bool = False) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [{"system": "urn:oid:1.2.3.4", "value": "PAT-7"}],
            "name": [{"family": "Invented", "given": ["Person"]}],
            "birthDate": "1970-02-03",
            "gender": "female",
        },
        {
            "resourceType": "ServiceRequest",
            "id": "sr1",
            "identifier": [
                {"type": ACSN, "value": "ACC-7"},
                {
                    "type": {"coding": [{"system": ACSN["coding"][0]["system"], "code": "PLAC"}]},
                    "value": "PL-1",
                },
                {
                    "type": {"coding": [{"system": ACSN["coding"][0]["system"], "code": "FILL"}]},
                    "value": "FI-1",
                },
            ],
            "status": "completed",
            "intent": "order",
            "subject": {"reference": "Patient/p1"},
        },
        {
            "resourceType": "ImagingStudy",
            "id": "is1",
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY}"}],
            "status": "available",
            "subject": {"reference": "Patient/p1"},
            "series": [
                {
                    "uid": f"{STUDY}.2",
                    "modality": {"code": "CT"},
                    "instance": [{"uid": f"{STUDY}.2.{n}", "sopClass": {"code": "x"}} for n in (3, 5)],
                }
            ],
        },
        _media(5, f"http://gw.example/images/{STUDY}.2.5.png?window=lung&size=512"),
        _media(3, f"http://gw.example/images/{STUDY}.2.3.png"),
        _observation("o1", "59776-5", "Procedure Findings", "右肺上叶见结节（Se 2 Im 5）。", ["m5"]),
        _observation("o2", "59776-5", "Procedure Findings", "Pleura | normal ^ & ~ \\ fine.", []),
        _observation("o3", "19005-8", "Impression", "另见图1。", ["m3"]),
        {
            "resourceType": "Binary",
            "id": "b1",
            "contentType": "application/pdf",
            "data": base64.b64encode(PDF).decode(),
        },
        {
            "resourceType": "DiagnosticReport",
            "id": "dr1",
            "meta": {"versionId": "1", "lastUpdated": "2026-12-01T03:50:26.000+00:00"},
            "status": status,
            "code": {
                "coding": [
                    {"system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study"}
                ]
            },
            "subject": {"reference": "Patient/p1"},
            "issued": "2026-12-01T03:50:26Z",
            "effectiveDateTime": "2026-01-05",
            "basedOn": [{"reference": "ServiceRequest/sr1"}],
            "imagingStudy": [{"reference": "ImagingStudy/is1"}],
            "identifier": [{"type": ACSN, "value": "ACC-7"}],
            "result": [{"reference": f"Observation/{o}"} for o in ("o1", "o2", "o3")],
            "presentedForm": [{"contentType": "application/pdf", "url": "http://gw.example/fhir/Binary/b1"}],
        },
    ]
    if with_devices:
        resources += [
            {
                "resourceType": "Device",
                "id": "d1",
                "deviceName": [{"name": "findings-model"}],
                "version": [{"value": "0.3"}],
            },
            {
                "resourceType": "Provenance",
                "id": "pv1",
                "target": [{"reference": "DiagnosticReport/dr1"}],
                "agent": [{"who": {"reference": "Device/d1"}}],
            },
        ]
    return copy.deepcopy(resources)
