"""ImagingStudy, ServiceRequest, and the image selections a sentence links to (Media in R4, ImagingSelection
in R5), with tied neighbour slices."""

from __future__ import annotations

from gateway.align.model import Link
from gateway.fhir import ids
from gateway.fhir.codes import code_map
from gateway.fhir.links import rendered_path
from gateway.fhir.mapping.common import (
    _accession_identifier,
    _instances,
    _ref,
    _uid_identifier,
    dicom_datetime,
)
from gateway.fhir.mapping.inputs import PublishInput, Resource, Version


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
                # Relative: gateway.fhir.links makes it absolute when the resource is served.
                "url": rendered_path(s.study_instance_uid, series.series_instance_uid, inst.sop_instance_uid),
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
        "endpoint": [_ref("Endpoint", ids.dicomweb_endpoint_id())],
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
