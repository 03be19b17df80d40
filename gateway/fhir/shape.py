"""Subsetting a resource for ``_summary`` and ``_elements`` (FHIR R4 3.1.1.5.7, 3.1.1.5.9).

A subset carries the ``SUBSETTED`` tag (v3 ObservationValue) so that no client mistakes it for the whole
resource; mandatory elements are always kept.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}

#: Elements with a minimum cardinality of 1 (R4 and R5), kept in every subset.
MANDATORY: dict[str, tuple[str, ...]] = {
    "DiagnosticReport": ("status", "code"),
    "Observation": ("status", "code"),
    "ImagingStudy": ("status", "subject"),
    "ServiceRequest": ("status", "intent", "subject"),
    "Provenance": ("target", "recorded", "agent"),
    "Media": ("status", "content"),
    "ImagingSelection": ("status", "code"),
    "Binary": ("contentType",),
    "Endpoint": ("status", "connectionType", "address", "payloadType"),
}

#: Elements marked "summary" in the FHIR R4 resource definitions (``_summary=true``).
SUMMARY: dict[str, tuple[str, ...]] = {
    "DiagnosticReport": (
        "identifier",
        "basedOn",
        "status",
        "category",
        "code",
        "subject",
        "encounter",
        "effectiveDateTime",
        "effectivePeriod",
        "issued",
        "performer",
        "resultsInterpreter",
        "result",
        "study",
    ),
    "Observation": (
        "identifier",
        "basedOn",
        "partOf",
        "status",
        "category",
        "code",
        "subject",
        "focus",
        "encounter",
        "effectiveDateTime",
        "issued",
        "performer",
        "valueString",
        "hasMember",
        "derivedFrom",
    ),
    "ImagingStudy": (
        "identifier",
        "status",
        "modality",
        "subject",
        "started",
        "basedOn",
        "referrer",
        "interpreter",
        "endpoint",
        "numberOfSeries",
        "numberOfInstances",
        "procedureCode",
        "procedure",
        "series",
    ),
    "Patient": (
        "identifier",
        "active",
        "name",
        "telecom",
        "gender",
        "birthDate",
        "address",
        "managingOrganization",
        "link",
    ),
    "ServiceRequest": ("identifier", "status", "intent", "code", "subject", "occurrenceDateTime"),
    "Media": ("identifier", "basedOn", "partOf", "status", "type", "modality", "subject", "content"),
    "ImagingSelection": (
        "identifier",
        "status",
        "subject",
        "category",
        "code",
        "studyUid",
        "derivedFrom",
        "seriesUid",
    ),
    "Provenance": ("target", "recorded", "agent"),
    "Practitioner": ("identifier", "active", "name"),
    "Organization": ("identifier", "active", "type", "name"),
    "Device": ("identifier", "status"),
}


def _keep(resource: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    rtype = str(resource.get("resourceType"))
    wanted = {"resourceType", "id", "meta", *MANDATORY.get(rtype, ()), *names}
    out = {k: copy.deepcopy(v) for k, v in resource.items() if k in wanted}
    return _tag(out)


def _tag(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    resource["meta"] = meta
    return resource


def subset(resource: dict[str, Any], summary: str | None, elements: tuple[str, ...]) -> dict[str, Any]:
    """``resource`` as ``_summary`` (true, text, data) or ``_elements`` ask; unchanged without either."""
    rtype = str(resource.get("resourceType"))
    if elements:
        return _keep(resource, elements)
    if summary == "true":
        if rtype not in SUMMARY:
            return _keep(resource, [k for k in resource if k != "text"])
        return _keep(resource, SUMMARY[rtype])
    if summary == "text":
        return _keep(resource, ("text",))
    if summary == "data":
        if "text" not in resource:
            return resource
        return _tag({k: copy.deepcopy(v) for k, v in resource.items() if k != "text"})
    return resource
