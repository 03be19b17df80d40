"""The Endpoint resource of the gateway's DICOMweb service (``/dicomweb``), built at request time.

``ImagingStudy.endpoint`` references it by a fixed id; its ``address`` is the public base URL (or, without
one, the base URL of the request) + ``/dicomweb``, so that published ImagingStudy versions never hold a
stale address. connectionType ``dicom-wado-rs`` (http://terminology.hl7.org/CodeSystem/endpoint-connection-type),
as IHE IMR wants for retrieving the rendered images of a selection (WADO-RS).
"""

from __future__ import annotations

from typing import Any, Literal

from gateway import __version__
from gateway.fhir import ids

CONNECTION_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
    "code": "dicom-wado-rs",
    "display": "DICOM WADO-RS",
}
PAYLOAD_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type",
    "code": "any",
    "display": "Any",
}
MIME_TYPES = ["application/dicom", "image/jpeg", "image/png"]


def dicomweb_endpoint(base_url: str, version: Literal["R4", "R5"]) -> dict[str, Any]:
    """The Endpoint for ``base_url`` (the server root, without ``/fhir``)."""
    res: dict[str, Any] = {
        "resourceType": "Endpoint",
        "id": ids.dicomweb_endpoint_id(),
        "meta": {"versionId": "1"},
        "status": "active",
        "name": f"gateway {__version__} DICOMweb (WADO-RS)",
        "address": f"{base_url.rstrip('/')}/dicomweb",
    }
    if version == "R4":
        res["connectionType"] = CONNECTION_TYPE
        res["payloadType"] = [{"coding": [PAYLOAD_TYPE]}]
        res["payloadMimeType"] = MIME_TYPES
    else:
        res["connectionType"] = [{"coding": [CONNECTION_TYPE]}]
        res["payload"] = [{"type": [{"coding": [PAYLOAD_TYPE]}], "mimeType": MIME_TYPES}]
    return res
