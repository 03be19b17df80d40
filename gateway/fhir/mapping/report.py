"""DiagnosticReport and its Observations, narrative and IMR HTML rendition."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.align.model import Link
from gateway.fhir import ids
from gateway.fhir.codes import code_map
from gateway.fhir.links import rendered_path, thumbnail_path
from gateway.fhir.mapping.common import (
    _instances,
    _instant,
    _local_instant,
    _ref,
    set_effective,
)
from gateway.fhir.mapping.imaging import _image_target, _link_display, slice_label
from gateway.fhir.mapping.inputs import PublishInput, Resource
from gateway.reading.text import compact


def report_status(document: dict[str, Any] | None) -> str:
    word = str((document or {}).get("status") or "final").strip().lower()
    return code_map().report_status.get(word, "final")


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
    set_effective(res, s, inp.timezone)
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
    index = _instances(inp.study)
    for s in sentences:
        if s.paragraph != current:
            if current is not None:
                parts.append("</p>")
            parts.append("<p>")
            current = s.paragraph
        parts.append(f'<span id="s{s.paragraph}-{s.index}">{html.escape(s.text)}</span>')
        for link in s.links:
            target = _image_target(inp, link)
            if link.resolved and link.sop_instance_uid in index and target is not None:
                where = slice_label(inp, link)
                label = html.escape(
                    f"{link.image_ref or 'image'}: {where}" if where else link.image_ref or "image"
                )
                uids = (inp.study.study_instance_uid, index[link.sop_instance_uid][0].series_instance_uid)
                # Relative WADO-RS links: gateway.fhir.links makes them absolute (and signed, for a browser)
                # when the report is served, so the stored rendition names no host.
                href = rendered_path(*uids, link.sop_instance_uid)
                thumb = thumbnail_path(*uids, link.sop_instance_uid)
                # The IMR marker names the image selection (ImagingSelection in R5, Media in R4) it shows.
                parts.append(
                    f' <a class="imr-ref-{target[0]}" data-imr-ref="{target[0]}/{target[1]}" href="{href}"'
                    f' data-method="{link.method}"><img class="imr-thumbnail" src="{thumb}" alt="{label}"/>'
                    f"[{label}]</a>"
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
    set_effective(res, s, inp.timezone)
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
