"""FHIR mapping: every resource passes fhir.resources and fhirclient strict; codes are checked."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from fhir_seed import STUDY_UID, document, publish_input

from gateway.fhir.errors import InvalidResource
from gateway.fhir.mapping import build_resources, dicom_datetime
from gateway.fhir.validate import validate_resource


def _by_type(resources: list[dict[str, Any]], rtype: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == rtype]


DRAFT = {
    "model_name": "cxr-draft",
    "model_version": "0.3",
    "sentences": [{"text": "Small nodule in the right upper lobe.", "sop_instance_uid": f"{STUDY_UID}.2.3"}],
}


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_every_resource_validates(version: str) -> None:
    from gateway.align.model import Link

    inp = publish_input(version=version, draft=DRAFT)
    drafted = Link(
        DRAFT["sentences"][0]["text"],
        None,
        f"{STUDY_UID}.2.3",
        f"{STUDY_UID}.2",
        "drafted",
        1.0,
        sentence=0,
        source="draft",
    )
    inp = type(inp)(**{**inp.__dict__, "links": (*inp.links, drafted)})
    resources = build_resources(inp)
    for resource in resources:
        validate_resource(resource, version)
    types = {r["resourceType"] for r in resources}
    assert {
        "Patient",
        "ImagingStudy",
        "ServiceRequest",
        "DiagnosticReport",
        "Observation",
        "Provenance",
        "Device",
        "Binary",
    } <= types
    assert ("Media" if version == "R4" else "ImagingSelection") in types
    reports = {r["status"]: r for r in _by_type(resources, "DiagnosticReport")}
    assert set(reports) == {"final", "preliminary"}
    draft_obs = [o for o in _by_type(resources, "Observation") if o["status"] == "preliminary"]
    assert [o["valueString"] for o in draft_obs] == [DRAFT["sentences"][0]["text"]]
    provenance_targets = {t["reference"] for p in _by_type(resources, "Provenance") for t in p["target"]}
    assert f"DiagnosticReport/{reports['preliminary']['id']}" in provenance_targets
    if version == "R5":
        assert "study" in reports["final"] and "imagingStudy" not in reports["final"]


def test_report_links_sentence_to_instance_media() -> None:
    resources = build_resources(publish_input())
    [report] = _by_type(resources, "DiagnosticReport")
    assert report["status"] == "final"
    assert report["code"]["coding"][0]["code"] == "18748-4"
    assert {c["coding"][0]["code"] for c in report["category"]} == {"LP29684-5", "RAD"}
    observations = {o["id"]: o for o in _by_type(resources, "Observation")}
    assert [r["reference"].split("/")[1] for r in report["result"]] == list(observations)
    linked = [o for o in observations.values() if "derivedFrom" in o]
    assert [o["valueString"] for o in linked] == ["右肺上叶见结节（Se 2 Im 5）。"]
    media_id = linked[0]["derivedFrom"][0]["reference"].split("/")[1]
    [media] = [m for m in _by_type(resources, "Media") if m["id"] == media_id]
    assert media["identifier"][0] == {"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY_UID}.2.5"}
    # Stored links are relative WADO-RS paths; gateway.fhir.links makes them absolute when served.
    assert media["content"]["url"].startswith("dicomweb/studies/")
    assert media["content"]["url"].endswith(f"/instances/{STUDY_UID}.2.5/rendered")
    pdf, html = report["presentedForm"]
    assert pdf["contentType"] == "application/pdf" and pdf["size"] == len(b"%PDF-1.4 test\n")
    html_bytes = base64.b64decode(html["data"])
    assert html["hash"] == base64.b64encode(hashlib.sha1(html_bytes).digest()).decode()
    assert f'/instances/{STUDY_UID}.2.5/rendered"' in html_bytes.decode()
    assert "://" not in html_bytes.decode()  # no host name is stored
    [study] = _by_type(resources, "ImagingStudy")
    assert study["identifier"][0] == {"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY_UID}"}
    assert study["series"][0]["instance"][4]["uid"] == f"{STUDY_UID}.2.5"


def test_document_status_is_kept() -> None:
    resources = build_resources(publish_input(document(status="preliminary")))
    assert _by_type(resources, "DiagnosticReport")[0]["status"] == "preliminary"


def test_code_values_are_checked() -> None:
    [report] = _by_type(build_resources(publish_input()), "DiagnosticReport")
    with pytest.raises(InvalidResource, match="status"):
        validate_resource({**report, "status": "bogus"})
    with pytest.raises(InvalidResource, match="category"):
        validate_resource({**report, "category": [report["category"][1]]})
    with pytest.raises(InvalidResource, match=r"fhirclient|fhir\.resources"):
        validate_resource({**report, "issued": "yesterday"})


def test_dicom_datetime() -> None:
    assert dicom_datetime("20260110", "093000.123", "Asia/Shanghai") == "2026-01-10T09:30:00+08:00"
    assert dicom_datetime("20260110", None, "UTC") == "2026-01-10"
    assert dicom_datetime("", "0930", "UTC") is None


def test_only_finding_sentences_become_observations() -> None:
    doc = document()
    base = doc["paragraphs"][0]
    doc["figures"] = [{"label": "figure:1", "caption": "图1 右肺上叶结节"}]
    doc["paragraphs"] = [
        {
            **base,
            "index": 0,
            "text": "Demo Imaging Centre. Name: Demo Patient.",
            "section": None,
            "figure_refs": [],
        },
        {**base, "index": 1, "text": "FINDINGS", "section": "findings", "heading": True, "figure_refs": []},
        {**base, "index": 2},
        {**base, "index": 3, "text": "图1  右肺上叶结节", "section": "findings", "figure_refs": []},
        {**base, "index": 4, "text": "Comparison: none.", "section": "comparison", "figure_refs": []},
    ]
    resources = build_resources(publish_input(doc))
    texts = [r["valueString"] for r in resources if r["resourceType"] == "Observation"]
    assert texts == ["右肺上叶见结节（Se 2 Im 5）。", "余未见异常。"]
    report = next(
        r for r in resources if r["resourceType"] == "DiagnosticReport" and r["status"] != "preliminary"
    )
    html = base64.b64decode(
        next(f["data"] for f in report["presentedForm"] if f["contentType"] == "text/html")
    )
    assert "Demo Imaging Centre" in html.decode()  # nothing is dropped from the report itself


def test_conclusion_joins_chinese_and_english_sentences() -> None:
    from gateway.fhir.mapping import join_sentences

    assert (
        join_sentences(["右肺结节。", "建议复查。", "Nodule;", "follow-up."])
        == "右肺结节。建议复查。 Nodule; follow-up."
    )
