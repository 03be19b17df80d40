"""Validate every resource before it is stored: two structural checks, then the code values they skip.

fhir.resources (R4B models for R4 JSON, R5 models for R5) checks structure and datatypes; fhirclient's R4
models with ``strict=True`` are a second, independent structural check for R4. Neither checks code values or
reference target types, so :func:`check_codes` does that for the elements the gateway writes.
"""

from __future__ import annotations

import importlib
from typing import Any

from gateway.fhir.codes import code_map
from gateway.fhir.errors import InvalidResource

_REF_TARGETS: dict[tuple[str, str], set[str]] = {
    ("DiagnosticReport", "subject"): {"Patient"},
    ("Observation", "subject"): {"Patient"},
    ("ImagingStudy", "subject"): {"Patient"},
    ("Media", "subject"): {"Patient"},
    ("ImagingSelection", "subject"): {"Patient"},
    ("ServiceRequest", "subject"): {"Patient"},
}


def _model_class(version: str, rtype: str) -> Any:
    package = "fhir.resources.R4B" if version == "R4" else "fhir.resources"
    module = importlib.import_module(f"{package}.{rtype.lower()}")
    return getattr(module, rtype)


def check_codes(resource: dict[str, Any]) -> None:
    """Status values, report category and reference targets (what the model libraries do not check)."""
    rtype = resource.get("resourceType", "")
    allowed = code_map().statuses.get(rtype)
    if allowed is not None and resource.get("status") not in allowed:
        raise InvalidResource(
            f"{rtype}/{resource.get('id')}: status {resource.get('status')!r} not in {allowed}"
        )
    if rtype == "DiagnosticReport":
        wanted = {(c["system"], c["code"]) for c in code_map().codings("report_category")}
        have = {
            (c.get("system"), c.get("code"))
            for cat in resource.get("category", [])
            for c in cat.get("coding", [])
        }
        if not wanted <= have:
            raise InvalidResource(
                f"DiagnosticReport/{resource.get('id')}: category must include {sorted(wanted)}"
            )
    if rtype == "ServiceRequest" and resource.get("intent") not in ("proposal", "plan", "directive", "order"):
        raise InvalidResource(f"ServiceRequest/{resource.get('id')}: intent {resource.get('intent')!r}")
    for (owner, element), targets in _REF_TARGETS.items():
        if owner == rtype and element in resource:
            ref = str(resource[element].get("reference", ""))
            if ref.split("/")[0] not in targets:
                raise InvalidResource(
                    f"{rtype}/{resource.get('id')}: {element} must reference {sorted(targets)}"
                )


def _without_values(exc: Exception) -> str:
    """Where and why validation failed, without the offending values (they may be patient data)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        problems = [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        ]
        return "; ".join(problems[:5])
    return type(exc).__name__


def validate_resource(resource: dict[str, Any], version: str = "R4") -> None:
    """Raise :class:`InvalidResource` unless ``resource`` passes every check for ``version``."""
    rtype = str(resource.get("resourceType", ""))
    try:
        _model_class(version, rtype).model_validate(resource)
    except (ImportError, AttributeError) as exc:
        raise InvalidResource(f"unknown resource type {rtype!r} for {version}") from exc
    except Exception as exc:  # pydantic's ValidationError and fhir_core's own errors
        raise InvalidResource(
            f"{rtype}/{resource.get('id')} fails fhir.resources {version}: {_without_values(exc)}"
        ) from exc
    if version == "R4":
        try:
            module = importlib.import_module(f"fhirclient.models.{rtype.lower()}")
            getattr(module, rtype)(resource, strict=True)
        except Exception as exc:  # fhirclient raises FHIRValidationError and plain errors
            raise InvalidResource(
                f"{rtype}/{resource.get('id')} fails fhirclient strict R4: {type(exc).__name__}"
            ) from exc
    check_codes(resource)
