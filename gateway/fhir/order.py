"""The order an EMR placed (received over HL7, :mod:`gateway.hl7.orders`) carried into the ServiceRequest.

Pure and kept apart from :mod:`gateway.fhir.mapping`: the mapping makes the ServiceRequest from the
accession number; this adds what only the order knows, so ``DiagnosticReport.basedOn`` points at a
ServiceRequest with the EMR's placer number (identifier type PLAC), the filler number (FILL), the requested
procedure, the reason for the study and its status.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_STATUS = {"CA": "revoked", "DC": "revoked", "OC": "revoked", "HD": "on-hold"}


@dataclass(frozen=True)
class OrderFacts:
    placer_number: str | None
    filler_number: str | None
    requested_procedure: str | None
    requested_procedure_id: str | None
    order_control: str | None
    reason: str | None = None


def _identifier(code: str, display: str, value: str) -> dict[str, Any]:
    return {"type": {"coding": [{"system": _V2_0203, "code": code, "display": display}]}, "value": value}


def apply_order(
    resources: Sequence[dict[str, Any]], order: OrderFacts | None, version: str = "R4"
) -> list[dict[str, Any]]:
    """The resources with the order's numbers and procedure on their ServiceRequest (copies; no change
    when there is no order or no ServiceRequest). ``version`` is the FHIR release published ("R4", "R5")."""
    out = [copy.deepcopy(r) for r in resources]
    if order is None:
        return out
    for res in out:
        if res.get("resourceType") != "ServiceRequest":
            continue
        idents = res.setdefault("identifier", [])
        if order.placer_number:
            idents.append(_identifier("PLAC", "Placer Identifier", order.placer_number))
        if order.filler_number:
            idents.append(_identifier("FILL", "Filler Identifier", order.filler_number))
        if order.requested_procedure or order.requested_procedure_id:
            code: dict[str, Any] = {"text": order.requested_procedure or order.requested_procedure_id}
            # R5's ServiceRequest.code is a CodeableReference as well
            res["code"] = {"concept": code} if version == "R5" else code
        if order.reason:  # R5 replaced reasonCode with reason, a CodeableReference
            concept = {"text": order.reason}
            if version == "R5":
                res["reason"] = [{"concept": concept}]
            else:
                res["reasonCode"] = [concept]
        if order.order_control in _STATUS:
            res["status"] = _STATUS[order.order_control]
    return out
