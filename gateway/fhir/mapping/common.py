"""Datatype helpers shared by the resource builders: references, identifiers, DICOM dates and names,
attachments."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any
from zoneinfo import ZoneInfo

from gateway.fhir.codes import code_map
from gateway.fhir.mapping.inputs import InstanceData, Resource, SeriesData, StudyData, Version


def _ref(rtype: str, rid: str, display: str | None = None) -> dict[str, str]:
    ref = {"reference": f"{rtype}/{rid}"}
    if display:
        ref["display"] = display
    return ref


def _uid_identifier(uid: str) -> dict[str, str]:
    return {"system": code_map().system("dicom_uid"), "value": f"urn:oid:{uid}"}


def _accession_identifier(study: StudyData) -> dict[str, Any]:
    ident: dict[str, Any] = {"type": {"coding": [code_map().coding("accession_type")]}}
    if study.accession_system:
        ident["system"] = study.accession_system
    ident["value"] = study.accession_number
    return ident


def _instant(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _local_instant(value: dt.datetime) -> str:
    """An instant that keeps the offset it was signed in (``2026-01-10T10:05:00+08:00``)."""
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def dicom_date(value: str | None) -> str | None:
    """DA (PS3.5 6.2, YYYYMMDD) → FHIR date, or None for an empty, placeholder (00000000) or impossible
    value (20261340): a DICOM date FHIR would reject must not stop a report from being published."""
    if not value or len(value) < 8 or not value[:8].isascii() or not value[:8].isdigit():
        return None
    try:
        day = dt.date(int(value[0:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None
    return day.isoformat() if day.year >= 1800 else None


def _dicom_time(value: str | None) -> tuple[int, int, int] | None:
    digits = (value or "").split(".")[0].strip()
    if len(digits) < 4 or not digits.isascii() or not digits.isdigit():
        return None
    hh, mm, ss = int(digits[0:2]), int(digits[2:4]), int(digits[4:6]) if len(digits) >= 6 else 0
    if hh > 23 or mm > 59 or ss > 59:
        return None
    return hh, mm, ss


def dicom_datetime(date: str | None, time: str | None, zone: str) -> str | None:
    """DA + TM (PS3.5 6.2) → FHIR dateTime; a time needs an offset, taken from the configured zone."""
    day = dicom_date(date)
    if day is None:
        return None
    hms = _dicom_time(time)
    if hms is None:
        return day
    d = dt.date.fromisoformat(day)
    local = dt.datetime(d.year, d.month, d.day, *hms, tzinfo=ZoneInfo(zone))
    return local.isoformat(timespec="seconds")


DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"


def study_effective(study: StudyData, zone: str) -> str | None:
    """When the study was done: StudyDate/StudyTime, else the first valid one of ``study.other_dates``."""
    for date, time in ((study.study_date, study.study_time), *study.other_dates):
        value = dicom_datetime(date, time, zone)
        if value:
            return value
    return None


def set_effective(resource: Resource, study: StudyData, zone: str) -> None:
    """``effectiveDateTime`` from :func:`study_effective`; without any valid date, a data-absent-reason
    (US Core "Missing Data": effective[x] is 1..1 on US Core DiagnosticReport)."""
    value = study_effective(study, zone)
    if value:
        resource["effectiveDateTime"] = value
    else:
        resource["_effectiveDateTime"] = {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "unknown"}]}


def date_warnings(study: StudyData) -> list[str]:
    """Why a DICOM date or time of the study was left out, naming only the attribute (never its value)."""
    out = []
    if study.patient.birth_date and dicom_date(study.patient.birth_date) is None:
        out.append("PatientBirthDate is not a valid date; left out of Patient")
    if study.study_date and dicom_date(study.study_date) is None:
        out.append(
            "StudyDate is not a valid date; left out of ImagingStudy; DiagnosticReport and Observation take "
            "another date of the study or are marked data-absent"
        )
    elif study.study_date and study.study_time and _dicom_time(study.study_time) is None:
        out.append("StudyTime is not a valid time; only the date is used")
    return out


#: ISO 21090 name representation of the PN component groups (PS3.5 6.2.1.2): alphabetic, ideographic,
#: phonetic.
_NAME_REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
_GROUP_CODES = ("ABC", "IDE", "SYL")


def _is_east_asian(text: str) -> bool:
    """Whether ``text`` is written in a script whose names run family name first with no space between
    the parts: Han ideographs, kana, Hangul (by Unicode character name, so accented Latin stays Latin)."""
    import unicodedata

    for ch in text:
        if ch.isascii() or not ch.isalpha():
            continue
        name = unicodedata.name(ch, "")
        if name.startswith(("CJK ", "HIRAGANA", "KATAKANA", "HANGUL", "HALFWIDTH KATAKANA")):
            return True
    return False


def _human_names(pn: str | None) -> list[dict[str, Any]]:
    """PN (PS3.5 6.2.1): up to three component groups (alphabetic, ideographic, phonetic) of ^-parts.

    The display order comes from the group and the script of its characters: Latin (accented or not) as
    "given family"; Han, kana and Hangul as family then given, with no space in the alphabetic and
    ideographic groups and one space in the phonetic group (kana readings are written apart).
    """
    out: list[dict[str, Any]] = []
    for group_index, group in enumerate((pn or "").split("=")[:3]):
        parts = group.split("^")
        family = parts[0].strip() if parts else ""
        given = [p.strip() for p in parts[1:3] if p.strip()]
        if not family and not given:
            continue
        if _is_east_asian(family + "".join(given)):
            joiner = " " if group_index == 2 else ""
            text = joiner.join([family, *given]) if family else joiner.join(given)
        else:
            text = " ".join([*given, family]).strip()
        name: dict[str, Any] = {
            "extension": [{"url": _NAME_REPRESENTATION, "valueCode": _GROUP_CODES[group_index]}],
            "text": text,
        }
        if family:
            name["family"] = family
        if given:
            name["given"] = given
        if len(parts) > 3 and parts[3].strip():
            name["prefix"] = [parts[3].strip()]
        if len(parts) > 4 and parts[4].strip():
            name["suffix"] = [parts[4].strip()]
        out.append(name)
    return out


def attachment(
    content_type: str,
    data: bytes,
    *,
    title: str,
    url: str | None = None,
    embed: bool,
    version: Version = "R4",
) -> Resource:
    """An Attachment with size and hash (base64 SHA-1, as FHIR defines ``Attachment.hash``).

    ``size`` is an ``unsignedInt`` (a JSON number) in R4 but an ``integer64`` in R5, which FHIR JSON writes
    as a string (R5 json.html#primitive).
    """
    att: Resource = {
        "contentType": content_type,
        "size": len(data) if version == "R4" else str(len(data)),
        "hash": base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"),  # noqa: S324 - FHIR's choice
        "title": title,
    }
    if url:
        att["url"] = url
    if embed:
        att["data"] = base64.b64encode(data).decode("ascii")
    return att


def image_url(base_url: str, sop_instance_uid: str, fmt: str = "png") -> str:
    return f"{base_url.rstrip('/')}/images/{sop_instance_uid}.{fmt}"


# -- resources ----------------------------------------------------------------------------------------------


def _instances(study: StudyData) -> dict[str, tuple[SeriesData, InstanceData]]:
    return {i.sop_instance_uid: (x, i) for x in study.series for i in x.instances}
