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

from gateway.fhir import ids
from gateway.fhir.codes import code_map
from gateway.fhir.links import binary_path
from gateway.fhir.mapping.agents import (
    _provenance,
    device_resource,
    organization_resource,
    practitioner_resources,
)
from gateway.fhir.mapping.common import (
    _accession_identifier,
    _instant,
    _ref,
    _uid_identifier,
    attachment,
    date_warnings,
    dicom_date,
    dicom_datetime,
    image_url,
)
from gateway.fhir.mapping.findings import Structured, structured_resources
from gateway.fhir.mapping.imaging import (
    _image_target,
    image_resource,
    imaging_study_resource,
    neighbour_uids,
    service_request_resource,
    slice_label,
)
from gateway.fhir.mapping.inputs import (
    ALIGNER_DEVICE,
    InstanceData,
    PatientData,
    Pdf,
    PublishInput,
    Resource,
    SeriesData,
    StudyData,
    Version,
)
from gateway.fhir.mapping.patient import patient_resource
from gateway.fhir.mapping.report import (
    FINDING_SECTIONS,
    _html_rendition,
    _narrative,
    _observation,
    _report_base,
    _Sentence,
    _sentences,
    join_sentences,
    report_status,
)


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
        # Coded findings (gateway.structure): named by their sentence's hasMember, not by report.result.
        structured = (
            structured_resources(inp, findings, observations) if inp.structured_findings else Structured()
        )
        for o in observations:
            if o["id"] in structured.members:
                o["hasMember"] = structured.members[o["id"]]
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
        forms = [
            attachment(
                "text/html",
                _html_rendition(inp, sentences, title),
                title=title,
                embed=True,
                version=inp.version,
            )
        ]
        if inp.pdf is not None and pdf_id is not None:
            forms.insert(
                0,
                attachment(
                    "application/pdf",
                    inp.pdf.data,
                    title=title,
                    url=binary_path(pdf_id),  # made absolute when served (gateway.fhir.links)
                    embed=False,
                    version=inp.version,
                ),
            )
        report["presentedForm"] = forms
        report["text"] = _narrative(sentences, inp)
        organization = organization_resource(inp)
        practitioners = practitioner_resources(inp)
        report["performer"] = [_ref("Organization", organization["id"], organization["name"])]
        if practitioners:
            report["resultsInterpreter"] = [_ref("Practitioner", p["id"]) for p in practitioners]
        out.extend(
            [
                organization,
                *practitioners,
                ocr,
                aligner,
                *images.values(),
                *structured.resources,
                *observations,
                report,
            ]
        )
        out.append(_provenance(inp, [report, *observations, *images.values()], [ocr, aligner], pdf_id))
        if structured.provenance is not None:
            out.append(structured.provenance)

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
        # Drafted sentences are coded like read ones (ids kept apart by source); preliminary like the draft.
        draft_structured = (
            structured_resources(inp, draft_sentences, draft_obs, source="draft")
            if inp.structured_findings
            else Structured()
        )
        for o in draft_obs:
            if o["id"] in draft_structured.members:
                o["hasMember"] = draft_structured.members[o["id"]]
        draft_report["issued"] = _instant(inp.issued)  # machine-written now, not signed by anyone
        draft_org = organization_resource(inp)
        # IMR: every report names the Organization that performs it, a machine draft included.
        draft_report["performer"] = [_ref("Organization", draft_org["id"], draft_org["name"])]
        if not any(r["resourceType"] == "Organization" for r in out):
            out.append(draft_org)
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
        present = {(r["resourceType"], r["id"]) for r in out}
        out.extend(r for r in draft_structured.resources if (r["resourceType"], r["id"]) not in present)
        out.extend([model, *draft_obs, draft_report])
        out.append(_provenance(inp, [draft_report, *draft_obs], [model, aligner], None))
        if draft_structured.provenance is not None:
            out.append(draft_structured.provenance)
    return out


__all__ = [
    "ALIGNER_DEVICE",
    "FINDING_SECTIONS",
    "InstanceData",
    "PatientData",
    "Pdf",
    "PublishInput",
    "Resource",
    "SeriesData",
    "StudyData",
    "Version",
    "attachment",
    "build_resources",
    "date_warnings",
    "device_resource",
    "dicom_date",
    "dicom_datetime",
    "image_resource",
    "image_url",
    "imaging_study_resource",
    "join_sentences",
    "neighbour_uids",
    "organization_resource",
    "patient_resource",
    "practitioner_resources",
    "report_status",
    "service_request_resource",
    "slice_label",
]
