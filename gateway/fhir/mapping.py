"""DICOM study + read report + links → FHIR resources (R4 4.0.1 by default, R5 5.0.0 as a setting).

A pure function: :func:`build_resources` takes values and returns resource dicts; validation is in
:mod:`gateway.fhir.validate` and storage in :mod:`gateway.fhir.store`. What goes where:

- Patient from the DICOM Patient module (PS3.3 C.7.1.1); ImagingStudy with series and instances, identifier
  ``urn:dicom:uid``; ServiceRequest when there is an accession number (identifier type ACSN).
- DiagnosticReport (US Core "Report and Note", IHE IMR): category LP29684-5 + RAD, code LOINC 18748-4,
  ``result`` one Observation per sentence (``valueString``; ``derivedFrom`` the Media/ImagingSelection or
  the ImagingStudy it links to), ``media`` one Media per linked instance (R4), ``presentedForm`` the PDF and
  an HTML rendition whose sentences link to their images.
- Drafted (machine-written) findings: a separate DiagnosticReport and Observations, always ``preliminary``.
- Provenance with a Device for the OCR engine, the aligner, and the findings model.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from gateway import __version__
from gateway.align.model import Link
from gateway.fhir import ids
from gateway.fhir.codes import code_map
from gateway.fhir.signoff import SignOff
from gateway.reading.text import compact

Version = Literal["R4", "R5"]
Resource = dict[str, Any]
ALIGNER_DEVICE = ("gateway-align", __version__)


@dataclass(frozen=True)
class PatientData:
    patient_id: str
    issuer: str = ""
    name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    #: Identifier.system of the Patient ID (the issuer's URI from the site table, or the default).
    system: str | None = None


@dataclass(frozen=True)
class InstanceData:
    sop_instance_uid: str
    sop_class_uid: str
    number: int | None = None
    rows: int | None = None
    columns: int | None = None


@dataclass(frozen=True)
class SeriesData:
    series_instance_uid: str
    number: int | None = None
    modality: str | None = None
    description: str | None = None
    instances: tuple[InstanceData, ...] = ()


@dataclass(frozen=True)
class StudyData:
    study_instance_uid: str
    patient: PatientData
    accession_number: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    description: str | None = None
    referring_physician: str | None = None
    series: tuple[SeriesData, ...] = ()
    #: Identifier.system of the accession number (site table, or the default).
    accession_system: str | None = None


@dataclass(frozen=True)
class Pdf:
    data: bytes
    report_sop_instance_uid: str | None = None


@dataclass(frozen=True)
class PublishInput:
    """Everything one publication of a study needs."""

    study: StudyData
    base_url: str
    document: dict[str, Any] | None = None
    links: tuple[Link, ...] = ()
    draft: dict[str, Any] | None = None
    pdf: Pdf | None = None
    timezone: str = "UTC"
    version: Version = "R4"
    issued: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    #: Who signed the report and when (see :mod:`gateway.fhir.signoff`); its time becomes ``issued``.
    signoff: SignOff = field(default_factory=SignOff)
    #: The performing organization when the report names none.
    organization: str = "Radiology"


# -- small helpers ------------------------------------------------------------------------------------------


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


def date_warnings(study: StudyData) -> list[str]:
    """Why a DICOM date or time of the study was left out, naming only the attribute (never its value)."""
    out = []
    if study.patient.birth_date and dicom_date(study.patient.birth_date) is None:
        out.append("PatientBirthDate is not a valid date; left out of Patient")
    if study.study_date and dicom_date(study.study_date) is None:
        out.append("StudyDate is not a valid date; left out of ImagingStudy, DiagnosticReport, Observation")
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
    content_type: str, data: bytes, *, title: str, url: str | None = None, embed: bool
) -> Resource:
    """An Attachment with size and hash (base64 SHA-1, as FHIR defines ``Attachment.hash``)."""
    att: Resource = {
        "contentType": content_type,
        "size": len(data),
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
    names = _human_names(p.name)
    if names:
        res["name"] = names
    gender = {"M": "male", "F": "female", "O": "other"}.get((p.sex or "").upper())
    res["gender"] = gender or "unknown"
    birth = dicom_date(p.birth_date)
    if birth:
        res["birthDate"] = birth
    return res


def _modality(code: str, version: Version) -> Resource:
    coding = {"system": code_map().system("dcm"), "code": code}
    return coding if version == "R4" else {"coding": [coding]}


def imaging_study_resource(inp: PublishInput) -> Resource:
    s = inp.study
    pid = ids.patient_id(s.patient.patient_id, s.patient.issuer)
    identifiers: list[Resource] = [_uid_identifier(s.study_instance_uid)]
    if s.accession_number:
        identifiers.append(_accession_identifier(s))
    res: Resource = {
        "resourceType": "ImagingStudy",
        "id": ids.imaging_study_id(s.study_instance_uid),
        "identifier": identifiers,
        "status": "available",
        "subject": _ref("Patient", pid),
        "numberOfSeries": len(s.series),
        "numberOfInstances": sum(len(x.instances) for x in s.series),
    }
    started = dicom_datetime(s.study_date, s.study_time, inp.timezone)
    if started:
        res["started"] = started
    if s.accession_number:
        res["basedOn"] = [
            _ref("ServiceRequest", ids.service_request_id(s.study_instance_uid, s.accession_number))
        ]
    # The gateway's DICOMweb service; the Endpoint (with its address) is built when it is read, so that a
    # change of the public base URL does not leave stale addresses in published versions.
    res["endpoint"] = [_ref("Endpoint", ids.dicomweb_endpoint_id())]
    if s.description:
        res["description"] = s.description
        # The requested procedure as the site named it; no code system is claimed for free text.
        if inp.version == "R4":
            res["procedureCode"] = [{"text": s.description}]
        else:
            res["procedure"] = [{"concept": {"text": s.description}}]
    # Acquisition modalities only: the report (DOC, SR) and key-object series are not what was imaged.
    skip = set(code_map().non_acquisition_modalities)
    modalities = sorted({x.modality for x in s.series if x.modality and x.modality not in skip})
    if modalities:
        res["modality"] = [_modality(m, inp.version) for m in modalities]
    series = []
    for x in s.series:
        item: Resource = {
            "uid": x.series_instance_uid,
            "modality": _modality(x.modality or "OT", inp.version),
        }
        if x.number is not None:
            item["number"] = x.number
        if x.description:
            item["description"] = x.description
        item["numberOfInstances"] = len(x.instances)
        instances = []
        for i in x.instances:
            inst: Resource = {
                "uid": i.sop_instance_uid,
                "sopClass": {"system": code_map().system("sop_class"), "code": f"urn:oid:{i.sop_class_uid}"},
            }
            if i.number is not None:
                inst["number"] = i.number
            instances.append(inst)
        if instances:
            item["instance"] = instances
        series.append(item)
    if series:
        res["series"] = series
    return res


def service_request_resource(inp: PublishInput) -> Resource | None:
    s = inp.study
    if not s.accession_number:
        return None
    return {
        "resourceType": "ServiceRequest",
        "id": ids.service_request_id(s.study_instance_uid, s.accession_number),
        "identifier": [_accession_identifier(s)],
        "status": "completed",
        "intent": "order",
        "subject": _ref("Patient", ids.patient_id(s.patient.patient_id, s.patient.issuer)),
    }


def device_resource(name: str, version: str, fhir_version: Version) -> Resource:
    res: Resource = {"resourceType": "Device", "id": ids.device_id(name, version), "status": "active"}
    if fhir_version == "R4":
        res["deviceName"] = [{"name": name, "type": "model-name"}]
    else:
        res["name"] = [{"value": name, "type": "user-friendly-name"}]
    res["version"] = [{"value": version}]
    return res


def _instances(study: StudyData) -> dict[str, tuple[SeriesData, InstanceData]]:
    return {i.sop_instance_uid: (x, i) for x in study.series for i in x.instances}


def _image_target(inp: PublishInput, link: Link) -> tuple[str, str] | None:
    """(resource type, id) an Observation derives from for this link."""
    s = inp.study
    if not link.resolved:
        return None
    if link.sop_instance_uid:
        if inp.version == "R4":
            return "Media", ids.media_id(link.sop_instance_uid)
        return "ImagingSelection", ids.selection_id(
            s.study_instance_uid, link.series_instance_uid or "", link.sop_instance_uid
        )
    if link.series_instance_uid:
        if inp.version == "R4":
            return "ImagingStudy", ids.imaging_study_id(s.study_instance_uid)
        return "ImagingSelection", ids.selection_id(s.study_instance_uid, link.series_instance_uid, None)
    return None


def image_resource(inp: PublishInput, link: Link) -> Resource | None:
    """Media (R4) or ImagingSelection (R5) for a resolved link."""
    s = inp.study
    pid = ids.patient_id(s.patient.patient_id, s.patient.issuer)
    index = _instances(s)
    if inp.version == "R4":
        if not link.sop_instance_uid or link.sop_instance_uid not in index:
            return None
        series, inst = index[link.sop_instance_uid]
        res: Resource = {
            "resourceType": "Media",
            "id": ids.media_id(inst.sop_instance_uid),
            "identifier": [_uid_identifier(inst.sop_instance_uid)],
            "partOf": [_ref("ImagingStudy", ids.imaging_study_id(s.study_instance_uid))],
            "status": "completed",
            "type": {"coding": [code_map().coding("media_type_image")]},
            "subject": _ref("Patient", pid),
            "content": {
                "contentType": "image/png",
                "url": image_url(inp.base_url, inst.sop_instance_uid),
                "title": f"Series {series.number} image {inst.number}",
            },
        }
        if series.modality:
            res["modality"] = {"coding": [{"system": code_map().system("dcm"), "code": series.modality}]}
        if inst.rows:
            res["height"] = inst.rows
        if inst.columns:
            res["width"] = inst.columns
        return res
    if not link.series_instance_uid:
        return None
    sel: Resource = {
        "resourceType": "ImagingSelection",
        "id": ids.selection_id(s.study_instance_uid, link.series_instance_uid, link.sop_instance_uid),
        "status": "available",
        "subject": _ref("Patient", pid),
        "code": {"coding": [code_map().coding("key_image")]},
        "derivedFrom": [_ref("ImagingStudy", ids.imaging_study_id(s.study_instance_uid))],
        "studyUid": s.study_instance_uid,
        "seriesUid": link.series_instance_uid,
    }
    if link.sop_instance_uid:
        sel["identifier"] = [_uid_identifier(link.sop_instance_uid)]
        inst_data = index.get(link.sop_instance_uid)
        item: Resource = {"uid": link.sop_instance_uid}
        if inst_data is not None:
            item["sopClass"] = {
                "system": code_map().system("sop_class"),
                "code": f"urn:oid:{inst_data[1].sop_class_uid}",
            }
        instances = [item]
        for uid in neighbour_uids(link):  # slices tied with the linked one: the selection holds them all
            if uid in index:
                instances.append(
                    {
                        "uid": uid,
                        "sopClass": {
                            "system": code_map().system("sop_class"),
                            "code": f"urn:oid:{index[uid][1].sop_class_uid}",
                        },
                    }
                )
        sel["instance"] = instances
    return sel


def report_status(document: dict[str, Any] | None) -> str:
    word = str((document or {}).get("status") or "final").strip().lower()
    return code_map().report_status.get(word, "final")


def neighbour_uids(link: Link) -> list[str]:
    """The slices the aligner found tied with the linked one (``detail.neighbours``), best first."""
    out = []
    for item in link.detail.get("neighbours") or []:
        uid = item.get("sop_instance_uid") if isinstance(item, dict) else None
        if uid and uid != link.sop_instance_uid:
            out.append(str(uid))
    return list(dict.fromkeys(out))


def slice_label(inp: PublishInput, link: Link) -> str | None:
    """ "slice 40 (±1)" when the linked slice ties with its neighbours; None without neighbours."""
    index = _instances(inp.study)
    uids = neighbour_uids(link)
    if not uids or link.sop_instance_uid not in index:
        return None
    number = index[link.sop_instance_uid][1].number
    others = [index[u][1].number for u in uids if u in index]
    if number is None:
        return None
    spread = max((abs(n - number) for n in others if n is not None), default=0)
    return f"slice {number} (±{spread})" if spread else f"slice {number}"


def _link_display(link: Link, inp: PublishInput | None = None) -> str:
    ref = link.image_ref or "series"
    where = slice_label(inp, link) if inp is not None else None
    if where:
        ref = f"{ref}, {where}"
    return f"{ref} ({link.method}, confidence {link.confidence:.2f})"


@dataclass
class _Sentence:
    paragraph: int
    index: int
    text: str
    section: str | None
    links: list[Link]
    finding: bool = True


FINDING_SECTIONS = frozenset({"findings", "impression"})


def join_sentences(sentences: Sequence[str]) -> str:
    """Join sentences as a reader expects: no space between Chinese ones, one space next to Latin text."""
    out = ""
    for sentence in sentences:
        if out and (out[-1].isascii() or sentence[:1].isascii()):
            out += " "
        out += sentence
    return out


def _is_caption(paragraph: dict[str, Any], document: dict[str, Any]) -> bool:
    """A paragraph made only of the captions of the document's figures ("图1 ... Figure 2 ...")."""
    rest = compact(str(paragraph.get("text", "")))
    captions = sorted(
        (compact(str(f.get("caption") or "")) for f in document.get("figures", [])), key=len, reverse=True
    )
    if not rest or not any(captions):
        return False
    for caption in captions:
        if caption:
            rest = rest.replace(caption, "")
    return rest == ""


def _sentences(inp: PublishInput) -> list[_Sentence]:
    from gateway.align.aligner import document_sentences

    out: list[_Sentence] = []
    if inp.document is None:
        return out
    paragraphs = list(inp.document.get("paragraphs", []))
    headings = {int(p.get("index", -1)) for p in paragraphs if p.get("heading")}
    captions = {int(p.get("index", -1)) for p in paragraphs if _is_caption(p, inp.document)}
    # With recognised sections, only findings and impression hold finding sentences (Observations); the
    # letterhead, patient lines, captions and sign-off stay in the HTML rendition and the narrative.
    sectioned = any(p.get("section") for p in paragraphs)
    for sentence, _refs in document_sentences(inp.document):
        if sentence.paragraph in headings:
            continue
        finding = sentence.paragraph not in captions and (
            not sectioned or sentence.section in FINDING_SECTIONS
        )
        mine = [
            link
            for link in inp.links
            if link.source == "report"
            and link.paragraph == sentence.paragraph
            and link.sentence == sentence.index
        ]
        out.append(
            _Sentence(sentence.paragraph, sentence.index, sentence.text, sentence.section, mine, finding)
        )
    return out


def _observation(
    inp: PublishInput, *, oid: str, text: str, status: str, section: str | None, links: Sequence[Link]
) -> Resource:
    s = inp.study
    impression = section == "impression"
    code = code_map().coding("impression_code" if impression else "finding_code")
    res: Resource = {"resourceType": "Observation", "id": oid}
    if s.accession_number:
        res["basedOn"] = [
            _ref("ServiceRequest", ids.service_request_id(s.study_instance_uid, s.accession_number))
        ]
    res.update(
        {
            "status": status,
            "category": [{"coding": [code_map().coding("observation_category")]}],
            # code.text says what was observed (the concept), the sentence itself is the value.
            "code": {"coding": [code], "text": "Impression" if impression else "Finding"},
            "subject": _ref("Patient", ids.patient_id(s.patient.patient_id, s.patient.issuer)),
            "valueString": text,
        }
    )
    effective = dicom_datetime(s.study_date, s.study_time, inp.timezone)
    if effective:
        res["effectiveDateTime"] = effective
    derived: list[dict[str, str]] = []
    seen: set[str] = set()
    notes = []
    for link in links:
        target = _image_target(inp, link)
        if target is None:
            if not link.resolved and link.image_ref:
                notes.append({"text": f"Unresolved image reference: {link.image_ref}"})
            continue
        key = f"{target[0]}/{target[1]}"
        if key not in seen:
            seen.add(key)
            derived.append(_ref(target[0], target[1], _link_display(link, inp)))
    if derived:
        res["derivedFrom"] = derived
    if notes:
        res["note"] = notes
    return res


def _html_rendition(inp: PublishInput, sentences: Sequence[_Sentence], title: str) -> bytes:
    """The IHE IMR HTML rendition: every sentence, each linked to the images it refers to."""
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"/>',
        f"<title>{html.escape(title)}</title></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    current = None
    for s in sentences:
        if s.paragraph != current:
            if current is not None:
                parts.append("</p>")
            parts.append("<p>")
            current = s.paragraph
        parts.append(f'<span id="s{s.paragraph}-{s.index}">{html.escape(s.text)}</span>')
        for link in s.links:
            target = _image_target(inp, link)
            if link.resolved and link.sop_instance_uid and target is not None:
                where = slice_label(inp, link)
                label = html.escape(
                    f"{link.image_ref or 'image'}: {where}" if where else link.image_ref or "image"
                )
                href = html.escape(image_url(inp.base_url, link.sop_instance_uid), quote=True)
                # The IMR marker names the image selection (ImagingSelection in R5, Media in R4) it shows.
                parts.append(
                    f' <a class="imr-ref-{target[0]}" data-imr-ref="{target[0]}/{target[1]}" href="{href}"'
                    f' data-method="{link.method}">[{label}]</a>'
                )
    if current is not None:
        parts.append("</p>")
    parts.append("</body></html>")
    return "\n".join(parts).encode("utf-8")


def _narrative(sentences: Sequence[_Sentence], inp: PublishInput) -> dict[str, str]:
    """XHTML narrative; linked sentences carry the IMR span class for viewers that follow it."""
    body = []
    current = None
    for s in sentences:
        if s.paragraph != current:
            if current is not None:
                body.append("</p>")
            body.append("<p>")
            current = s.paragraph
        targets = list(dict.fromkeys(t for t in (_image_target(inp, link) for link in s.links) if t))
        # One id per sentence (ids are unique in the document); the marker class names the target type
        # and each target is a relative reference, so a sentence citing an image twice stays valid XHTML.
        sid = f"s{s.paragraph}-{s.index}"
        if targets:
            labels = {t: slice_label(inp, link) for link in s.links if (t := _image_target(inp, link))}
            refs = "".join(
                f' <a href="{t}/{i}">[{html.escape(labels.get((t, i)) or t)}]</a>' for t, i in targets
            )
            body.append(
                f'<span class="imr-ref-{targets[0][0]}" id="{sid}">{html.escape(s.text)}{refs}</span>'
            )
        else:
            body.append(f'<span id="{sid}">{html.escape(s.text)}</span>')
    if current is not None:
        body.append("</p>")
    if not body:
        body = ["<p>No report text.</p>"]
    return {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">' + "".join(body) + "</div>",
    }


def _report_base(inp: PublishInput, rid: str, status: str) -> Resource:
    s = inp.study
    res: Resource = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": status,
        "category": [{"coding": [c]} for c in code_map().codings("report_category")],
        "code": {"coding": [code_map().coding("report_code")]},
        "subject": _ref("Patient", ids.patient_id(s.patient.patient_id, s.patient.issuer)),
        "issued": _local_instant(inp.signoff.time) if inp.signoff.time else _instant(inp.issued),
    }
    effective = dicom_datetime(s.study_date, s.study_time, inp.timezone)
    if effective:
        res["effectiveDateTime"] = effective
    if s.accession_number:
        res["basedOn"] = [
            _ref("ServiceRequest", ids.service_request_id(s.study_instance_uid, s.accession_number))
        ]
    study_ref = _ref("ImagingStudy", ids.imaging_study_id(s.study_instance_uid))
    if inp.version == "R4":
        res["imagingStudy"] = [study_ref]
    else:
        res["study"] = [study_ref]
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
    out = []
    for name in inp.signoff.interpreters:
        names = _human_names(name) if "^" in name or "=" in name else [{"text": name}]
        res: Resource = {
            "resourceType": "Practitioner",
            "id": ids.stable_id("Practitioner", inp.signoff.organization or inp.organization, name),
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


def build_resources(inp: PublishInput) -> list[Resource]:
    """All resources of one publication of the study, in dependency order (referenced before referrers)."""
    s = inp.study
    out: list[Resource] = [patient_resource(s.patient)]
    sr = service_request_resource(inp)
    if sr is not None:
        out.append(sr)
    out.append(imaging_study_resource(inp))
    aligner = device_resource(*ALIGNER_DEVICE, inp.version)
    images: dict[str, Resource] = {}
    for link in inp.links:
        img = image_resource(inp, link)
        if img is not None:
            images.setdefault(img["id"], img)

    if inp.document is not None:
        engine = inp.document.get("engine") or {}
        ocr = device_resource(
            str(engine.get("name") or "unknown"), str(engine.get("version") or "unknown"), inp.version
        )
        pdf_id = ids.binary_id(s.study_instance_uid, "report-pdf") if inp.pdf else None
        if inp.pdf is not None and pdf_id is not None:
            out.append(
                {
                    "resourceType": "Binary",
                    "id": pdf_id,
                    "contentType": "application/pdf",
                    "data": base64.b64encode(inp.pdf.data).decode("ascii"),
                }
            )
        status = report_status(inp.document)
        sentences = _sentences(inp)
        findings = [x for x in sentences if x.finding]
        rid = ids.report_id(s.study_instance_uid)
        report = _report_base(inp, rid, status)
        identifiers: list[Resource] = []
        if inp.pdf is not None and inp.pdf.report_sop_instance_uid:
            identifiers.append(_uid_identifier(inp.pdf.report_sop_instance_uid))
        if s.accession_number:
            identifiers.append(_accession_identifier(s))
        if identifiers:
            report["identifier"] = identifiers
        obs_status = status if status in code_map().statuses["Observation"] else "final"
        observations = [
            _observation(
                inp,
                oid=ids.observation_id(s.study_instance_uid, "report", x.paragraph, x.index),
                text=x.text,
                status=obs_status,
                section=x.section,
                links=x.links,
            )
            for x in findings
        ]
        if observations:
            report["result"] = [_ref("Observation", o["id"]) for o in observations]
        if inp.version == "R4":
            media: list[Resource] = []
            seen: set[str] = set()
            for x in findings:
                for link in x.links:
                    target = _image_target(inp, link)
                    if target and target[0] == "Media" and target[1] not in seen:
                        seen.add(target[1])
                        media.append({"comment": x.text, "link": _ref("Media", target[1])})
            if media:
                report["media"] = media
        impression = [x.text for x in findings if x.section == "impression"]
        if impression:
            report["conclusion"] = join_sentences(impression)
        title = s.description or "Imaging report"
        forms = [attachment("text/html", _html_rendition(inp, sentences, title), title=title, embed=True)]
        if inp.pdf is not None and pdf_id is not None:
            forms.insert(
                0,
                attachment(
                    "application/pdf",
                    inp.pdf.data,
                    title=title,
                    url=f"{inp.base_url.rstrip('/')}/fhir/Binary/{pdf_id}",
                    embed=False,
                ),
            )
        report["presentedForm"] = forms
        report["text"] = _narrative(sentences, inp)
        organization = organization_resource(inp)
        practitioners = practitioner_resources(inp)
        report["performer"] = [_ref("Organization", organization["id"], organization["name"])]
        if practitioners:
            report["resultsInterpreter"] = [_ref("Practitioner", p["id"]) for p in practitioners]
        out.extend([organization, *practitioners, ocr, aligner, *images.values(), *observations, report])
        out.append(_provenance(inp, [report, *observations, *images.values()], [ocr, aligner], pdf_id))

    drafted = [link for link in inp.links if link.source == "draft"]
    if inp.draft and inp.draft.get("sentences"):
        model = device_resource(
            str(inp.draft.get("model_name") or "unknown"),
            str(inp.draft.get("model_version") or "unknown"),
            inp.version,
        )
        draft_obs = []
        for i, item in enumerate(inp.draft["sentences"]):
            mine = [link for link in drafted if link.sentence == i]
            draft_obs.append(
                _observation(
                    inp,
                    oid=ids.observation_id(s.study_instance_uid, "draft", 0, i),
                    text=str(item.get("text", "")),
                    status="preliminary",
                    section="findings",
                    links=mine,
                )
            )
        for o in draft_obs:
            o["note"] = [
                *o.get("note", []),
                {"text": "Machine-written draft finding; not reviewed by a radiologist."},
            ]
        draft_report = _report_base(inp, ids.draft_report_id(s.study_instance_uid), "preliminary")
        draft_report["result"] = [_ref("Observation", o["id"]) for o in draft_obs]
        draft_report["conclusion"] = "Machine-written draft findings (preliminary, not reviewed)."
        draft_sentences = [
            _Sentence(
                0, i, str(item.get("text", "")), "findings", [link for link in drafted if link.sentence == i]
            )
            for i, item in enumerate(inp.draft["sentences"])
        ]
        draft_report["text"] = _narrative(draft_sentences, inp)
        draft_report["issued"] = _instant(inp.issued)  # machine-written now, not signed by anyone
        if not any(r["resourceType"] == "Organization" for r in out):
            out.append(organization_resource(inp))
        if inp.version == "R4":
            draft_media = []
            for x in draft_sentences:
                for link in x.links:
                    target = _image_target(inp, link)
                    if target and target[0] == "Media":
                        draft_media.append({"comment": x.text, "link": _ref("Media", target[1])})
            if draft_media:
                draft_report["media"] = draft_media
        for link in drafted:
            img = image_resource(inp, link)
            if img is not None and img["id"] not in images:
                images[img["id"]] = img
                out.append(img)
        if aligner not in out:
            out.append(aligner)
        out.extend([model, *draft_obs, draft_report])
        out.append(_provenance(inp, [draft_report, *draft_obs], [model, aligner], None))
    return out
