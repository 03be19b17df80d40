"""The US Core 6.1 and IHE IMR 1.1.0 rules that a JSON schema cannot express, as a checker for the tests.

The official schema (``fhir_schema``) checks each element's type and name. These rules check what the
profiles add: cardinalities the base resource leaves optional, fixed codes, references that must resolve to
a given type inside one publication, well-formed narrative XHTML with unique ids, and FHIR JSON's own rule
that arrays and objects are never empty (json.html#arrays). Each message names the rule and the resource,
never a value from the report.

Sources: US Core 6.1.0 StructureDefinitions ``us-core-diagnosticreport-note``, ``us-core-patient``,
``us-core-observation-clinical-result`` (must-support noted, cardinality enforced); IHE RAD IMR 1.1.0
``DiagnosticReport.fsh`` / ``ImagingStudy`` (the essentials are in ``shared/notes/standards.md``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any, Literal

LOINC = "http://loinc.org"
DICOM_UID = "urn:dicom:uid"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
XHTML = "{http://www.w3.org/1999/xhtml}"
NON_ACQUISITION = {"DOC", "SR", "KO", "PR"}
Version = Literal["R4", "R5"]


def _codes(concept: Any, system: str | None = None) -> set[str]:
    if not isinstance(concept, dict):
        return set()
    return {
        str(c.get("code"))
        for c in concept.get("coding", [])
        if isinstance(c, dict) and (system is None or c.get("system") == system)
    }


def _refs(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value] if value is not None else []
    return [str(r.get("reference", "")) for r in items if isinstance(r, dict)]


def _absent(resource: dict[str, Any], element: str) -> bool:
    """True when ``element`` is missing and has no data-absent-reason on ``_element`` either."""
    if element in resource:
        return False
    shadow = resource.get(f"_{element}")
    return not (
        isinstance(shadow, dict) and any(e.get("url") == DATA_ABSENT for e in shadow.get("extension", []))
    )


def empty_containers(node: Any, path: str = "") -> list[str]:
    """FHIR JSON never carries ``[]``, ``{}`` or ``""`` (json.html#arrays, #primitive)."""
    found: list[str] = []
    if isinstance(node, dict):
        if not node:
            found.append(path or "/")
        for key, value in node.items():
            found.extend(empty_containers(value, f"{path}/{key}"))
    elif isinstance(node, list):
        if not node:
            found.append(path)
        for i, value in enumerate(node):
            found.extend(empty_containers(value, f"{path}/{i}"))
    elif node == "":
        found.append(path)
    return found


def narrative_errors(resource: dict[str, Any]) -> list[str]:
    """``text.div`` is one well-formed XHTML ``div`` with unique ``id`` attributes (narrative.html#xhtml)."""
    text = resource.get("text")
    if not isinstance(text, dict):
        return []
    where = f"{resource['resourceType']}/{resource.get('id')}"
    try:
        root = ET.fromstring(str(text.get("div", "")))
    except ET.ParseError as exc:
        return [f"{where}: narrative is not well-formed XML ({exc.code})"]
    errors = []
    if root.tag != f"{XHTML}div":
        errors.append(f"{where}: narrative root is not an XHTML div")
    ids = [el.get("id") for el in root.iter() if el.get("id")]
    if len(ids) != len(set(ids)):
        errors.append(f"{where}: narrative repeats element ids")
    if any(el.tag.split("}")[-1] in {"script", "form", "iframe", "object"} for el in root.iter()):
        errors.append(f"{where}: narrative holds an element FHIR forbids")
    if text.get("status") not in {"generated", "extensions", "additional", "empty"}:
        errors.append(f"{where}: narrative status")
    return errors


def _report_rules(
    r: dict[str, Any], version: Version, index: dict[str, dict[str, Any]], signed: bool
) -> list[str]:
    where = f"DiagnosticReport/{r.get('id')}"
    errors = []
    # US Core DiagnosticReport for Report and Note
    if LOINC not in {c.get("system") for cat in r.get("category", []) for c in cat.get("coding", [])}:
        errors.append(f"{where}: US Core: category needs a LOINC coding")
    if "LP29684-5" not in {code for cat in r.get("category", []) for code in _codes(cat, LOINC)}:
        errors.append(f"{where}: US Core: category LP29684-5 (Radiology)")
    if not _codes(r.get("code"), LOINC):
        errors.append(f"{where}: US Core: code from LOINC")
    if not all(ref.startswith("Patient/") for ref in _refs(r.get("subject"))) or "subject" not in r:
        errors.append(f"{where}: US Core/IMR: subject 1..1 Reference(Patient)")
    if not any(k.startswith("effective") for k in r) and _absent(r, "effectiveDateTime"):
        errors.append(f"{where}: US Core: effective[x] 1..1 (or data-absent-reason)")
    if "issued" not in r:
        errors.append(f"{where}: US Core/IMR: issued")
    if not any(ref.startswith("Organization/") for ref in _refs(r.get("performer"))):
        errors.append(f"{where}: IMR: performer includes the Organization")
    # IHE IMR DiagnosticReport
    study = r.get("imagingStudy" if version == "R4" else "study")
    if not any(ref.startswith("ImagingStudy/") for ref in _refs(study)):
        errors.append(f"{where}: IMR: {'imagingStudy' if version == 'R4' else 'study'} 1..*")
    if version == "R5" and "imagingStudy" in r:
        errors.append(f"{where}: R5 has no DiagnosticReport.imagingStudy")
    if r.get("status") == "final" and signed and not _refs(r.get("resultsInterpreter")):
        errors.append(f"{where}: IMR: resultsInterpreter 1..* (Practitioner)")
    if not all(ref.startswith("Practitioner/") for ref in _refs(r.get("resultsInterpreter"))):
        errors.append(f"{where}: resultsInterpreter must reference Practitioner")
    if r.get("status") in {"final", "amended", "corrected", "appended"} or "presentedForm" in r:
        forms = r.get("presentedForm", [])
        if not any(f.get("contentType") == "text/html" for f in forms):
            errors.append(f"{where}: IMR: presentedForm needs a text/html rendition")
        for f in forms:
            if not {"contentType", "size", "hash"} <= set(f):
                errors.append(f"{where}: IMR: each presentedForm has contentType, size and hash")
    for ref in _refs(r.get("result")):
        if not ref.startswith("Observation/") or ref not in index:
            errors.append(f"{where}: result must resolve to an Observation of the publication")
    return errors


def _observation_rules(o: dict[str, Any], version: Version) -> list[str]:
    where = f"Observation/{o.get('id')}"
    errors = []
    if "status" not in o or not o.get("code") or "subject" not in o:
        errors.append(f"{where}: US Core: status, code and subject")
    if not o.get("category"):
        errors.append(f"{where}: US Core: category")
    if not (_codes(o.get("code"), LOINC) & {"59776-5", "19005-8"}) and not o.get("code", {}).get("text"):
        errors.append(f"{where}: IMR: a finding (59776-5) or impression (19005-8)")
    for ref in _refs(o.get("derivedFrom")):
        allowed = ("Media/", "ImagingStudy/") if version == "R4" else ("ImagingSelection/", "ImagingStudy/")
        if not ref.startswith(allowed):
            errors.append(f"{where}: derivedFrom must be an image selection or the study ({version})")
    return errors


def _imaging_study_rules(s: dict[str, Any], version: Version) -> list[str]:
    where = f"ImagingStudy/{s.get('id')}"
    errors = []
    if not any(i.get("system") == DICOM_UID for i in s.get("identifier", [])):
        errors.append(f"{where}: IMR: identifier urn:dicom:uid (Study Instance UID)")
    if not _refs(s.get("endpoint")):
        errors.append(f"{where}: IMR: endpoint (WADO-RS)")
    modality = s.get("modality", [])
    codes = (
        {m.get("code") for m in modality}
        if version == "R4"
        else {c.get("code") for m in modality for c in m.get("coding", [])}
    )
    if codes & NON_ACQUISITION:
        errors.append(f"{where}: modality lists only acquisition modalities")
    if version == "R4" and "procedureCode" not in s:
        errors.append(f"{where}: IMR: procedureCode")
    if version == "R5" and "procedure" not in s:
        errors.append(f"{where}: IMR: procedure")
    if not all(ref.startswith("Patient/") for ref in _refs(s.get("subject"))):
        errors.append(f"{where}: subject is the Patient")
    return errors


def _patient_rules(p: dict[str, Any]) -> list[str]:
    where = f"Patient/{p.get('id')}"
    errors = []
    idents = p.get("identifier", [])
    if not idents or not all(i.get("system") and i.get("value") for i in idents):
        errors.append(f"{where}: US Core: identifier 1..* with system and value")
    for name in p.get("name", [{}]):
        marked = any(e.get("url") == DATA_ABSENT for e in name.get("extension", []))
        # us-core-6: (family or given) xor data-absent-reason.
        if bool(name.get("family") or name.get("given")) == marked:
            errors.append(f"{where}: US Core: each name has a family or given name, or a data-absent-reason")
    if p.get("gender") not in {"male", "female", "other", "unknown"}:
        errors.append(f"{where}: US Core: gender 1..1")
    return errors


def _practitioner_rules(p: dict[str, Any]) -> list[str]:
    where = f"Practitioner/{p.get('id')}"
    errors = []
    if not p.get("name"):
        errors.append(f"{where}: US Core: name 1..*")
    idents = p.get("identifier", [])
    if not idents:
        errors.append(f"{where}: US Core: identifier 1..*")
    for ident in idents:
        marked = any(e.get("url") == DATA_ABSENT for e in ident.get("extension", []))
        if not (ident.get("system") and ident.get("value")) and not marked:
            errors.append(f"{where}: US Core: identifier has a system and value, or data-absent-reason")
    return errors


def _provenance_rules(p: dict[str, Any]) -> list[str]:
    where = f"Provenance/{p.get('id')}"
    errors = []
    if not p.get("target") or not p.get("agent") or "recorded" not in p:
        errors.append(f"{where}: target, recorded and agent")
    for agent in p.get("agent", []):
        who = _refs(agent.get("who"))
        if any(ref.startswith("Device/") for ref in who) and not _refs(agent.get("onBehalfOf")):
            errors.append(f"{where}: US Core Provenance: a Device agent acts onBehalfOf an Organization")
    return errors


def rule_errors(resources: Iterable[dict[str, Any]], version: Version, *, signed: bool = False) -> list[str]:
    """Every US Core / IMR rule that ``resources`` (one publication, or a searchset's entries) break.

    References among them must resolve (apart from Binary, served at its own URL, and the Endpoint, built
    at request time). ``signed``: the report named a radiologist, so IMR's resultsInterpreter 1..* applies.
    """
    items = list(resources)
    index = {f"{r['resourceType']}/{r['id']}": r for r in items if "id" in r}
    errors: list[str] = []
    for r in items:
        where = f"{r['resourceType']}/{r.get('id')}"
        errors.extend(f"{where}: empty JSON value at {p}" for p in empty_containers(r))
        errors.extend(narrative_errors(r))
        rtype = r["resourceType"]
        if rtype == "DiagnosticReport":
            errors.extend(_report_rules(r, version, index, signed))
        elif rtype == "Observation":
            errors.extend(_observation_rules(r, version))
        elif rtype == "ImagingStudy":
            errors.extend(_imaging_study_rules(r, version))
        elif rtype == "Patient":
            errors.extend(_patient_rules(r))
        elif rtype == "Practitioner":
            errors.extend(_practitioner_rules(r))
        elif rtype == "Provenance":
            errors.extend(_provenance_rules(r))
    for r in items:
        for ref in _all_refs(r):
            if ref.split("/")[0] in {"Binary", "Endpoint"} or "://" in ref or ref.startswith("#"):
                continue
            if ref not in index:
                errors.append(f"{r['resourceType']}/{r.get('id')}: reference {ref} does not resolve")
    return errors


def _all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [x for v in node.values() for x in _all_refs(v)]
    if isinstance(node, list):
        return [x for v in node for x in _all_refs(v)]
    return []
