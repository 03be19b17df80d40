"""Units of the review: link corrections (pure) and the approved draft in the FHIR mapping."""

from __future__ import annotations

import datetime as dt

from gateway.align.model import Link
from gateway.fhir import ids
from gateway.fhir.mapping import (
    InstanceData,
    PatientData,
    PublishInput,
    SeriesData,
    StudyData,
    build_resources,
)
from gateway.fhir.mapping.review import DraftReviewData, apply_draft_review
from gateway.ui.i18n import TEXT, pick_language
from gateway.ui.review import Correction, apply_corrections, corrected_links


def _link(sop: str, paragraph: int = 0, sentence: int = 0, source: str = "report") -> Link:
    return Link("s", "Se 2 Im 5", sop, "1.2.3", "explicit", 0.9, True, paragraph, sentence, source)  # type: ignore[arg-type]


def test_newest_correction_wins_and_removal_drops_the_link() -> None:
    links = [_link("1.1"), _link("1.2", sentence=1)]
    first = Correction("report", 0, 0, "1.1", "1.5", "1.2.3")
    second = Correction("report", 0, 0, "1.1", "1.6", "1.2.3")
    removed = Correction("report", 0, 1, "1.2", None, None)
    out = apply_corrections(links, [first, second, removed])
    assert [(x.sop_instance_uid, x.method, x.confidence) for x in out] == [("1.6", "reader", 1.0)]
    assert corrected_links(links, [first])[0][0] == "1.1"  # later corrections still find the link
    assert apply_corrections(links, []) == tuple(links)


def _input() -> PublishInput:
    study = StudyData(
        "1.2.9",
        PatientData("P1"),
        series=(
            SeriesData(
                "1.2.9.4", 4, "DX", None, (InstanceData("1.2.9.4.1", "1.2.840.10008.5.1.4.1.1.1.1", 1),)
            ),
        ),
    )
    draft = {"model_name": "m", "model_version": "v1", "sentences": [{"text": "heart normal ."}]}
    return PublishInput(study=study, base_url="http://gw", draft=draft)


def test_approved_draft_becomes_final_with_interpreter_and_provenance() -> None:
    inp = _input()
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    review = DraftReviewData("approved", "r1", "Dr R", at, ("Heart normal.", "Lungs clear."))
    out = apply_draft_review(build_resources(inp), review, inp)
    report = next(r for r in out if r["id"] == ids.draft_report_id("1.2.9"))
    assert report["status"] == "final"
    assert report["resultsInterpreter"][0]["display"] == "Dr R"
    obs = {r["id"]: r for r in out if r["resourceType"] == "Observation"}
    assert [obs[r["reference"].split("/")[1]]["valueString"] for r in report["result"]] == list(
        review.sentences
    )
    assert all(obs[r["reference"].split("/")[1]]["status"] == "final" for r in report["result"])
    prov = next(
        p for p in out if p["resourceType"] == "Provenance" and p["recorded"].startswith("2026-01-02")
    )
    assert prov["agent"][0]["type"]["coding"][0]["code"] == "verifier"
    assert any(r["resourceType"] == "Practitioner" for r in out)
    ids_out = [r["id"] for r in out]
    assert len(ids_out) == len(set(ids_out))


def test_rejected_draft_is_cancelled_and_names_no_interpreter() -> None:
    inp = _input()
    review = DraftReviewData("rejected", "r1", "Dr R", dt.datetime.now(dt.UTC), ("heart normal .",))
    out = apply_draft_review(build_resources(inp), review, inp)
    report = next(r for r in out if r["id"] == ids.draft_report_id("1.2.9"))
    assert report["status"] == "cancelled" and "resultsInterpreter" not in report


def test_both_languages_and_the_choice() -> None:
    assert all(en and zh for en, zh in TEXT.values())
    assert pick_language(None, "zh-CN,zh;q=0.9", "en") == "zh"
    assert pick_language("en", "zh-CN", "zh") == "en"
    assert pick_language(None, None, "zh") == "zh"


def test_imaging_study_gets_a_valid_wado_rs_endpoint() -> None:
    import dataclasses

    from gateway.fhir.endpoint import dicomweb_endpoint
    from gateway.fhir.validate import validate_resource

    for version in ("R4", "R5"):
        inp = dataclasses.replace(_input(), version=version)
        study = next(r for r in build_resources(inp) if r["resourceType"] == "ImagingStudy")
        endpoint = dicomweb_endpoint("http://gw", version)
        assert study["endpoint"] == [{"reference": f"Endpoint/{endpoint['id']}"}]
        assert endpoint["address"] == "http://gw/dicomweb"
        validate_resource(endpoint, version)
        validate_resource(study, version)
