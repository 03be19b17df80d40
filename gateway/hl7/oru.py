"""Building an ORU^R01 (HL7 v2.5.1, chapter 7) from the FHIR resources of one publication.

A pure function: resources in, an ER7 string out, built and validated with hl7apy. Structure::

    MSH  PID  [PV1: the order's PV1 or a later ADT's, when known]
    [NTE: machine-written, with the producing devices]
    ORC  OBR (placer OBR-2, filler OBR-3, accession OBR-18, status OBR-25)
    {OBX TX|FT one per sentence, OBX-4 = "section.sentence"}
    {OBX RP one per linked image, OBX-4 = the sentence's sub-id}
    [OBX ST 113014^DICOM Study^DCM]  [OBX ED the PDF in Base64]

OBR-25 and OBX-11 follow DiagnosticReport.status: preliminary/partial → P, final → F, amended/corrected
→ C (HL7 table 0123 and 0085).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from gateway.hl7.errors import Hl7EncodingError, Hl7Error
from gateway.hl7.escape import escape

_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_LOINC = "http://loinc.org"
_SECTION_ORDER = {"59776-5": 1, "19005-8": 2}
_STATUS = {
    "registered": "I",
    "partial": "P",
    "preliminary": "P",
    "final": "F",
    "amended": "C",
    "corrected": "C",
    "appended": "C",
    "cancelled": "X",
    "entered-in-error": "W",
}
_CODECS = {"UNICODE UTF-8": "utf-8", "8859/1": "latin-1", "ASCII": "ascii"}
_SEX = {"male": "M", "female": "F", "other": "O", "unknown": "U"}


@dataclass(frozen=True)
class OruOptions:
    """What a destination wants (see :class:`gateway.delivery.settings.Hl7Destination`)."""

    message_id: str
    sending_application: str = "GATEWAY"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"
    charset: str = "UNICODE UTF-8"
    text_type: Literal["TX", "FT"] = "TX"
    include_pdf: bool = False
    image_links: Literal["wado-rs", "uid", "none"] = "wado-rs"
    wado_base_url: str | None = None
    #: The order's visit as stored from its PV1 or a later ADT (:func:`gateway.hl7.orders.visit_of`).
    visit: dict[str, Any] | None = None


def codec(charset: str) -> str:
    """The Python codec of an MSH-18 value."""
    try:
        return _CODECS[charset]
    except KeyError:
        raise Hl7Error(f"unsupported HL7 character set {charset!r}") from None


def result_status(report_status: str) -> str:
    return _STATUS.get(report_status, "F")


def _hl7_time(value: str | None) -> str:
    """FHIR date/dateTime/instant → HL7 DTM (YYYYMMDD[HHMMSS[+ZZZZ]])."""
    if not value:
        return ""
    if len(value) == 10:
        return value.replace("-", "")
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if when.tzinfo is None:
        return when.strftime("%Y%m%d%H%M%S")
    return when.strftime("%Y%m%d%H%M%S%z")


def _index(resources: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{r['resourceType']}/{r['id']}": r for r in resources}


def _ident_type(ident: dict[str, Any]) -> str | None:
    for coding in (ident.get("type") or {}).get("coding", []):
        if coding.get("system") == _V2_0203:
            return str(coding.get("code"))
    return None


def _ident(resource: dict[str, Any] | None, kind: str) -> str:
    for ident in (resource or {}).get("identifier", []):
        if _ident_type(ident) == kind and ident.get("value"):
            return str(ident["value"])
    return ""


def _authority(system: str | None) -> str:
    """PID-3.4 (HD) from an Identifier.system: ``urn:oid:X`` → ``&X&ISO``; another URI → ``&URI&URI``
    (HD-1, the namespace ID, holds at most 20 characters, so a URI goes to HD-2, the universal ID)."""
    if not system:
        return ""
    if system.startswith("urn:oid:"):
        return f"&{escape(system[8:])}&ISO"
    if len(system) <= 20 and ":" not in system:
        return escape(system)
    return f"&{escape(system)}&URI"


def _cwe(coding: dict[str, Any] | None, fallback: str = "") -> str:
    if not coding:
        return fallback
    system = {_LOINC: "LN", "http://dicom.nema.org/resources/ontology/DCM": "DCM"}.get(
        str(coding.get("system")), "L"
    )
    return f"{escape(str(coding.get('code', '')))}^{escape(str(coding.get('display', '')))}^{system}"


def _first_coding(concept: dict[str, Any] | None) -> dict[str, Any] | None:
    codings = (concept or {}).get("coding") or []
    return codings[0] if codings else None


def _sop_uid(media: dict[str, Any]) -> str | None:
    for ident in media.get("identifier", []):
        if ident.get("system") == "urn:dicom:uid" and str(ident.get("value", "")).startswith("urn:oid:"):
            return str(ident["value"])[8:]
    return None


def _series_of(study: dict[str, Any] | None) -> dict[str, str]:
    return {
        str(inst["uid"]): str(series["uid"])
        for series in (study or {}).get("series", [])
        for inst in series.get("instance", [])
    }


def _study_uid(study: dict[str, Any] | None) -> str | None:
    for ident in (study or {}).get("identifier", []):
        if ident.get("system") == "urn:dicom:uid" and str(ident.get("value", "")).startswith("urn:oid:"):
            return str(ident["value"])[8:]
    return None


def _image_pointer(
    media: dict[str, Any], study_uid: str | None, series: dict[str, str], options: OruOptions
) -> str | None:
    sop = _sop_uid(media)
    if options.image_links == "uid":
        return f"{escape(sop)}^DICOM^IM^DICOM" if sop else None
    if options.wado_base_url and sop and study_uid and sop in series:
        url = (
            f"{options.wado_base_url.rstrip('/')}/studies/{study_uid}/series/{series[sop]}"
            f"/instances/{sop}/rendered"
        )
        return f"{escape(url)}^WADO^IM^JPEG"
    link = (media.get("content") or {}).get("url")
    return f"{escape(str(link))}^URL^IM^PNG" if link else None


def _devices(resources: Sequence[dict[str, Any]], by_ref: dict[str, dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for prov in (r for r in resources if r["resourceType"] == "Provenance"):
        for agent in prov.get("agent", []):
            device = by_ref.get(str((agent.get("who") or {}).get("reference")))
            if device is None or device.get("resourceType") != "Device":
                continue
            name = next((n.get("name") for n in device.get("deviceName", [])), "device")
            version = next((v.get("value") for v in device.get("version", [])), "")
            names.append(f"{name} {version}".strip())
    return names


def _pv1(pv1: Any, visit: dict[str, Any]) -> None:
    """PV1 where the order or an ADT told us: class (PV1-2, U unknown), location, attending, visit number."""
    pv1.pv1_1 = "1"
    pv1.pv1_2 = escape(str(visit.get("patient_class") or "U"))
    location = [escape(str(p)) for p in visit.get("location") or []]
    if any(location):
        pv1.pv1_3 = "^".join(location).rstrip("^")
    attending = [escape(str(p)) for p in visit.get("attending") or []]
    if any(attending):
        pv1.pv1_7 = "^".join(attending).rstrip("^")
    if visit.get("visit_number"):
        pv1.pv1_19 = escape(str(visit["visit_number"]))


def build_oru(resources: Sequence[dict[str, Any]], options: OruOptions) -> str:
    """The ORU^R01 of the publication's DiagnosticReport, as ER7 (segments joined by CR).

    Raises :class:`Hl7Error` when there is no report, and :class:`Hl7EncodingError` when its text cannot be
    carried in ``options.charset``.
    """
    by_ref = _index(resources)
    report = next((r for r in resources if r["resourceType"] == "DiagnosticReport"), None)
    if report is None:
        raise Hl7Error("the publication has no DiagnosticReport")
    patient = by_ref.get(str((report.get("subject") or {}).get("reference")))
    order = next((by_ref.get(str(b.get("reference"))) for b in report.get("basedOn", [])), None)
    study = next((by_ref.get(str(s.get("reference"))) for s in report.get("imagingStudy", [])), None)
    status = result_status(str(report.get("status", "final")))
    formatted = options.text_type == "FT"
    level = VALIDATION_LEVEL.TOLERANT if options.include_pdf else VALIDATION_LEVEL.STRICT

    try:
        msg = Message("ORU_R01", version="2.5.1", validation_level=level)
        msh = msg.msh
        msh.msh_3 = escape(options.sending_application)
        if options.sending_facility:
            msh.msh_4 = escape(options.sending_facility)
        if options.receiving_application:
            msh.msh_5 = escape(options.receiving_application)
        if options.receiving_facility:
            msh.msh_6 = escape(options.receiving_facility)
        msh.msh_7 = _hl7_time((report.get("meta") or {}).get("lastUpdated") or report.get("issued"))
        msh.msh_9 = "ORU^R01^ORU_R01"
        msh.msh_10 = options.message_id
        msh.msh_11 = options.processing_id
        msh.msh_12 = "2.5.1"
        if options.charset != "ASCII":
            msh.msh_18 = options.charset

        result = msg.add_group("ORU_R01_PATIENT_RESULT")
        if patient is not None:
            patient_group = result.add_group("ORU_R01_PATIENT")
            pid = patient_group.pid
            pid.pid_1 = "1"
            ids = [
                f"{escape(str(i['value']))}^^^{_authority(i.get('system'))}^MR"
                for i in patient.get("identifier", [])
                if i.get("value")
            ]
            pid.pid_3 = "~".join(ids) or '""'
            names = patient.get("name") or []
            if names:
                name = names[0]
                given = name.get("given") or []
                pid.pid_5 = "^".join(
                    [escape(str(name.get("family", ""))), *(escape(str(g)) for g in given[:2])]
                )
            if patient.get("birthDate"):
                pid.pid_7 = _hl7_time(str(patient["birthDate"]))
            if patient.get("gender") in _SEX:
                pid.pid_8 = _SEX[str(patient["gender"])]
            if options.visit:
                _pv1(patient_group.add_group("ORU_R01_VISIT").pv1, options.visit)

        group = result.add_group("ORU_R01_ORDER_OBSERVATION")
        placer, filler = _ident(order, "PLAC"), _ident(order, "FILL")
        accession = _ident(report, "ACSN") or _ident(order, "ACSN")
        group.orc.orc_1 = "RE"
        if placer:
            group.orc.orc_2 = escape(placer)
        if filler or accession:
            group.orc.orc_3 = escape(filler or accession)
        group.orc.orc_5 = "CM"
        obr = group.obr
        obr.obr_1 = "1"
        if placer:
            obr.obr_2 = escape(placer)
        if filler or accession:
            obr.obr_3 = escape(filler or accession)
        service = _first_coding((order or {}).get("code")) or _first_coding(report.get("code"))
        obr.obr_4 = _cwe(service, "18748-4^Diagnostic imaging study^LN")
        effective = _hl7_time(report.get("effectiveDateTime"))
        if effective:
            obr.obr_7 = effective
        if accession:
            obr.obr_18 = escape(accession)
        issued = _hl7_time(report.get("issued"))
        if issued:
            obr.obr_22 = issued
        obr.obr_24 = "RAD"
        obr.obr_25 = status

        devices = _devices(resources, by_ref)
        if status == "P" and devices:
            nte = group.add_segment("NTE")
            nte.nte_1 = "1"
            nte.nte_3 = escape(
                "Preliminary, machine-written until a named reader approves it. Produced by "
                + ", ".join(devices)
                + "."
            )

        study_uid = _study_uid(study)
        series = _series_of(study)
        set_id = 0

        def obx(value_type: str, code: str, sub_id: str, value: str) -> None:
            nonlocal set_id
            set_id += 1
            seg = group.add_group("ORU_R01_OBSERVATION").obx
            seg.obx_1 = str(set_id)
            seg.obx_2 = value_type
            seg.obx_3 = code
            if sub_id:
                seg.obx_4 = sub_id
            seg.obx_5 = value
            seg.obx_11 = status
            if effective:
                seg.obx_14 = effective

        sentence_no: dict[int, int] = {}
        for ref in report.get("result", []):
            observation = by_ref.get(str(ref.get("reference")))
            if observation is None or observation.get("resourceType") != "Observation":
                continue
            coding = _first_coding(observation.get("code"))
            section = _SECTION_ORDER.get(str((coding or {}).get("code")), 3)
            sentence_no[section] = sentence_no.get(section, 0) + 1
            sub_id = f"{section}.{sentence_no[section]}"
            text = observation.get("valueString") or (observation.get("code") or {}).get("text") or ""
            obx(
                options.text_type,
                _cwe(coding, "59776-5^Procedure Findings^LN"),
                sub_id,
                escape(str(text), formatted=formatted),
            )
            if options.image_links == "none":
                continue
            for derived in observation.get("derivedFrom", []):
                media = by_ref.get(str(derived.get("reference")))
                if media is None or media.get("resourceType") != "Media":
                    continue
                pointer = _image_pointer(media, study_uid, series, options)
                if pointer:
                    obx("RP", "IMAGE^Linked image^99GW", sub_id, pointer)
        if not sentence_no and report.get("conclusion"):
            obx(
                options.text_type,
                "19005-8^Impression^LN",
                "2.1",
                escape(str(report["conclusion"]), formatted=formatted),
            )
        if study_uid:
            obx("ST", "113014^DICOM Study^DCM", "", escape(study_uid))
        if options.include_pdf:
            pdf = _pdf(report, by_ref)
            if pdf is not None:
                obx("ED", "PDF^Report PDF^L", "", f"^AP^PDF^Base64^{pdf}")
        er7: str = msg.to_er7()
        if level == VALIDATION_LEVEL.STRICT:
            msg.validate()
        else:
            parse_message(er7, find_groups=True, validation_level=VALIDATION_LEVEL.TOLERANT).validate()
    except HL7apyException as exc:
        raise Hl7Error(f"ORU^R01 does not validate: {exc}") from exc
    try:
        er7.encode(codec(options.charset))
    except UnicodeEncodeError as exc:
        raise Hl7EncodingError(
            f"report text cannot be sent in {options.charset}; set the destination's charset to "
            f"UNICODE UTF-8 ({exc.reason} at position {exc.start})"
        ) from None
    return er7


def _pdf(report: dict[str, Any], by_ref: dict[str, dict[str, Any]]) -> str | None:
    for form in report.get("presentedForm", []):
        if form.get("contentType") != "application/pdf":
            continue
        if form.get("data"):
            return str(form["data"])
        url = str(form.get("url", ""))
        binary = by_ref.get("Binary/" + url.rsplit("/", 1)[-1]) if url else None
        if binary is not None and binary.get("data"):
            return str(binary["data"])
    for resource in by_ref.values():
        if resource.get("resourceType") == "Binary" and resource.get("contentType") == "application/pdf":
            return str(resource["data"]) if resource.get("data") else None
    return None


def encoded(er7: str, charset: str) -> bytes:
    """The bytes on the wire for MSH-18 ``charset``."""
    return er7.encode(codec(charset))


def pdf_bytes(er7_value: str) -> bytes:
    """Decode the data component of an ED value ``^AP^PDF^Base64^<data>``."""
    return base64.b64decode(er7_value.split("^")[-1])
