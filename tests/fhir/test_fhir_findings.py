"""Coded finding Observations in the FHIR publication (gateway/fhir/mapping/findings.py)."""

from __future__ import annotations

from typing import Any

import pytest
from fhir_seed import STUDY_UID, document, publish_input

from gateway.fhir.mapping import build_resources
from gateway.fhir.validate import validate_resource

SNOMED = "http://snomed.info/sct"
TEXT = (
    "右肺上叶尖段见结节（Se 2 Im 5）。结节大小约1.2×0.9cm，边缘毛刺。双侧少量胸腔积液。"
    "未见肿大淋巴结，考虑炎性病变可能。建议3个月后复查胸部CT。"
)


def _coded(resources: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [
        r
        for r in resources
        if r["resourceType"] == "Observation"
        and any(c.get("code") == code for c in (r.get("code") or {}).get("coding", []))
    ]


@pytest.fixture(params=["R4", "R5"])
def published(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    version = request.param
    return version, build_resources(publish_input(document(TEXT), version=version, structured_findings=True))


def test_every_structured_resource_validates(published: tuple[str, list[dict[str, Any]]]) -> None:
    version, resources = published
    for resource in resources:
        validate_resource(resource, version)


def test_nodule_is_one_coded_measured_linked_observation(published: tuple[str, list[dict[str, Any]]]) -> None:
    version, resources = published
    [nodule] = _coded(resources, "786838002")
    assert nodule["status"] == "preliminary"
    assert nodule["valueCodeableConcept"]["coding"][0]["code"] == "52101004"  # present
    assert nodule["bodySite"]["coding"] == [
        {"system": SNOMED, "code": "42400003", "display": "Upper lobe of right lung"}
    ]
    assert "尖段" in nodule["bodySite"]["text"]
    sizes = [c for c in nodule["component"] if "valueQuantity" in c]
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"]) for c in sizes] == [
        ("103339001", 12.0),
        ("103340004", 9.0),
    ]
    assert {c["valueQuantity"]["code"] for c in sizes} == {"mm"}
    assert {"valueString": "spiculated", "code": {"text": "Descriptor"}} in nodule["component"]
    # Site from the first sentence, size from the second: one lesion, derived from the image both cite.
    [target] = nodule["derivedFrom"]
    kind = "Media" if version == "R4" else "ImagingSelection"
    assert target["reference"].startswith(f"{kind}/")
    image = next(r for r in resources if f"{r['resourceType']}/{r['id']}" == target["reference"])
    uids = [i["value"] for i in image.get("identifier", [])]
    assert f"urn:oid:{STUDY_UID}.2.5" in uids
    assert nodule["basedOn"][0]["reference"].startswith("ServiceRequest/")


def test_laterality_is_post_coordinated_for_sites_that_take_a_side(
    published: tuple[str, list[dict[str, Any]]],
) -> None:
    _, resources = published
    [effusion] = _coded(resources, "60046008")
    codes = [c["code"] for c in effusion["bodySite"]["coding"]]
    assert codes == ["53941002", "53941002:272741003=51440002"]
    assert "component" not in effusion  # no size was given


def test_absent_and_uncertain_findings(published: tuple[str, list[dict[str, Any]]]) -> None:
    _, resources = published
    [nodes] = _coded(resources, "30746006")
    assert nodes["valueCodeableConcept"]["coding"][0]["code"] == "2667000"  # absent
    assert "interpretation" not in nodes
    hedged = [r for r in resources if r["resourceType"] == "Observation" and r.get("interpretation")]
    assert [h["code"]["text"] for h in hedged] == ["Lesion"]
    assert hedged[0]["interpretation"][0]["coding"][0]["code"] == "E"


def test_recommendation_and_report_links(published: tuple[str, list[dict[str, Any]]]) -> None:
    _, resources = published
    [rec] = _coded(resources, "18783-1")
    interval = next(c for c in rec["component"] if "valueQuantity" in c)["valueQuantity"]
    assert (interval["value"], interval["code"], interval["system"]) == (
        3.0,
        "mo",
        "http://unitsofmeasure.org",
    )
    [report] = [r for r in resources if r["resourceType"] == "DiagnosticReport"]
    results = {r["reference"] for r in report["result"]}
    [nodule] = _coded(resources, "786838002")
    # Not in report.result (HL7 ORU and the PACS SR read those as sentences), but members of sentences.
    assert f"Observation/{nodule['id']}" not in results
    members = {
        m["reference"]
        for r in resources
        if r["resourceType"] == "Observation" and f"Observation/{r['id']}" in results
        for m in r.get("hasMember", [])
    }
    assert {f"Observation/{nodule['id']}", f"Observation/{rec['id']}"} <= members
    provenance = [
        p
        for p in resources
        if p["resourceType"] == "Provenance" and {"reference": f"Observation/{nodule['id']}"} in p["target"]
    ]
    assert len(provenance) == 1


def test_referenced_resources_come_first(published: tuple[str, list[dict[str, Any]]]) -> None:
    _, resources = published
    seen: set[str] = set()
    for r in resources:
        if r["resourceType"] == "Observation":
            for ref in r.get("hasMember", []) + r.get("derivedFrom", []) + r.get("focus", []):
                assert ref["reference"] in seen, (r["id"], ref)
        seen.add(f"{r['resourceType']}/{r['id']}")


def test_bilingual_mentions_merge_but_different_sizes_do_not() -> None:
    text = "右肺上叶结节，约8mm。The right upper lobe nodule measures 8 mm. 右肺上叶另见一结节，约15mm。"
    resources = build_resources(publish_input(document(text), structured_findings=True))
    sizes = sorted(
        tuple(c["valueQuantity"]["value"] for c in o["component"] if "valueQuantity" in c)
        for o in _coded(resources, "786838002")
    )
    assert sizes == [(8.0,), (15.0,)]


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_drafted_sentences_are_coded_too(version: str) -> None:
    draft = {
        "model_name": "cxr-draft",
        "model_version": "0.3",
        "sentences": [
            {"text": "Small 8 mm nodule in the right upper lobe."},
            {"text": "No pleural effusion."},
        ],
    }
    resources = build_resources(
        publish_input(document(TEXT), version=version, structured_findings=True, draft=draft)
    )
    for resource in resources:
        validate_resource(resource, version)
    keys = [(r["resourceType"], r["id"]) for r in resources]
    assert len(keys) == len(set(keys))  # one structure Device for the read and the drafted findings
    draft_report = next(
        r for r in resources if r["resourceType"] == "DiagnosticReport" and r["status"] == "preliminary"
    )
    drafted = {x["reference"] for x in draft_report["result"]}
    members = [
        m["reference"]
        for r in resources
        if f"Observation/{r['id']}" in drafted and r["resourceType"] == "Observation"
        for m in r.get("hasMember", [])
    ]
    coded = {f"Observation/{r['id']}": r for r in resources if r["resourceType"] == "Observation"}
    nodules = [
        coded[m] for m in members if any(c.get("code") == "786838002" for c in coded[m]["code"]["coding"])
    ]
    assert len(nodules) == 1 and nodules[0]["status"] == "preliminary"
    sizes = [c["valueQuantity"]["value"] for c in nodules[0]["component"] if "valueQuantity" in c]
    assert sizes == [8.0]
    # kept apart from the read report's nodule (its own id), never merged into it
    read_nodules = [r for r in _coded(resources, "786838002") if f"Observation/{r['id']}" not in members]
    assert read_nodules and all(r["id"] != nodules[0]["id"] for r in read_nodules)
    effusion = [
        coded[m] for m in members if coded[m]["valueCodeableConcept"]["coding"][0]["code"] != "52101004"
    ]
    assert effusion, "the negated effusion is coded as absent"


@pytest.mark.parametrize("decision", ["approved", "rejected"])
def test_a_readers_review_decides_the_drafts_coded_findings(decision: str) -> None:
    import datetime as dt

    from gateway.fhir.mapping.review import DraftReviewData, apply_draft_review, reviewed_draft

    draft = {
        "model_name": "cxr-draft",
        "model_version": "0.3",
        "sentences": [{"text": "8 mm nodule in the right upper lobe."}],
    }
    review = DraftReviewData(
        decision,  # type: ignore[arg-type]
        "reader1",
        "Invented Reader",
        dt.datetime(2026, 12, 1, 8, tzinfo=dt.UTC),
        ("12 mm nodule in the right upper lobe.",) if decision == "approved" else (),
    )
    inp = reviewed_draft(publish_input(document(""), structured_findings=True, draft=draft), review)
    resources = apply_draft_review(build_resources(inp), review, inp)
    for resource in resources:
        validate_resource(resource, "R4")
    [nodule] = _coded(resources, "786838002")
    sizes = [c["valueQuantity"]["value"] for c in nodule.get("component", []) if "valueQuantity" in c]
    if decision == "approved":
        assert sizes == [12.0] and nodule["status"] == "preliminary"  # the reader's text, still machine-coded
    else:
        assert sizes == [8.0] and nodule["status"] == "cancelled"
