"""Who and what made a report: Device (OCR engine, aligner, model), Organization, Practitioner, Provenance."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.fhir import ids
from gateway.fhir.codes import code_map
from gateway.fhir.mapping.common import DATA_ABSENT_REASON, _human_names, _instant, _ref
from gateway.fhir.mapping.inputs import PublishInput, Resource, Version


def device_resource(name: str, version: str, fhir_version: Version) -> Resource:
    res: Resource = {"resourceType": "Device", "id": ids.device_id(name, version), "status": "active"}
    if fhir_version == "R4":
        res["deviceName"] = [{"name": name, "type": "model-name"}]
    else:
        res["name"] = [{"value": name, "type": "user-friendly-name"}]
    res["version"] = [{"value": version}]
    return res


def organization_resource(inp: PublishInput) -> Resource:
    name = inp.signoff.organization or inp.organization
    return {
        "resourceType": "Organization",
        "id": ids.stable_id("Organization", name),
        "active": True,
        "name": name,
    }


def practitioner_resources(inp: PublishInput) -> list[Resource]:
    """One Practitioner per radiologist who reported or verified; a PN value (with ^) keeps its parts."""
    known = {name: (system, value) for name, system, value in inp.practitioner_identifiers}
    out = []
    for name in inp.signoff.interpreters:
        names = _human_names(name) if "^" in name or "=" in name else [{"text": name}]
        found = known.get(name)
        # US Core Practitioner.identifier 1..*: from the site table, else marked unknown (missing data).
        identifier: Resource = (
            {"system": found[0], "value": found[1]}
            if found
            else {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "unknown"}]}
        )
        res: Resource = {
            "resourceType": "Practitioner",
            "id": ids.stable_id("Practitioner", inp.signoff.organization or inp.organization, name),
            "identifier": [identifier],
            "active": True,
        }
        if names:
            res["name"] = names
        out.append(res)
    return out


def _provenance(
    inp: PublishInput, targets: Sequence[Resource], devices: Sequence[Resource], pdf: str | None
) -> Resource:
    first = targets[0]
    res: Resource = {
        "resourceType": "Provenance",
        "id": ids.provenance_id(f"{first['resourceType']}/{first['id']}"),
        "target": [_ref(t["resourceType"], t["id"]) for t in targets],
        "recorded": _instant(inp.issued),
        "agent": [
            {
                "type": {
                    "coding": [code_map().coding("provenance_author" if i == 0 else "provenance_assembler")]
                },
                "who": _ref("Device", d["id"]),
                "onBehalfOf": _ref("Organization", organization_resource(inp)["id"]),
            }
            for i, d in enumerate(devices)
        ],
    }
    if pdf:
        res["entity"] = [{"role": "source", "what": _ref("Binary", pdf)}]
    return res
