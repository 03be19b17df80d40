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


def test_a_link_added_to_a_sentence_without_one_is_kept_and_can_be_corrected_again() -> None:
    links = [_link("1.1")]
    added = Correction("report", 2, 1, None, "1.7", "1.2.3", text="Nodule.")
    out = corrected_links(links, [added])
    assert [(o, x.sop_instance_uid, x.paragraph, x.sentence, x.method) for o, x in out] == [
        ("1.1", "1.1", 0, 0, "explicit"),
        (None, "1.7", 2, 1, "reader"),
    ]
    moved = Correction("report", 2, 1, None, "1.8", "1.2.3", text="Nodule.")
    assert [x.sop_instance_uid for x in apply_corrections(links, [added, moved])] == ["1.1", "1.8"]
    dropped = Correction("report", 2, 1, None, None, None)
    assert [x.sop_instance_uid for x in apply_corrections(links, [added, dropped])] == ["1.1"]
    # An unresolved reference in a sentence is corrected, not duplicated.
    unresolved = Link("s", "Fig 9", None, None, "explicit", 0.0, False, 2, 1)
    out2 = apply_corrections([unresolved], [added])
    assert [(x.sop_instance_uid, x.resolved) for x in out2] == [("1.7", True)]


def test_saved_edit_stays_preliminary_with_the_reader_as_author() -> None:
    inp = _input()
    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    review = DraftReviewData("saved", "r1", "Dr R", at, ("Heart size normal.",))
    out = apply_draft_review(build_resources(inp), review, inp)
    report = next(r for r in out if r["id"] == ids.draft_report_id("1.2.9"))
    assert report["status"] == "preliminary" and "resultsInterpreter" not in report
    obs = {r["id"]: r for r in out if r["resourceType"] == "Observation"}
    [value] = [obs[r["reference"].split("/")[1]] for r in report["result"]]
    assert value["valueString"] == "Heart size normal." and value["status"] == "preliminary"
    assert "not yet approved" in value["note"][0]["text"] and "performer" not in value
    prov = next(p for p in out if p["id"] == ids.provenance_id(f"review/DiagnosticReport/{report['id']}"))
    assert prov["agent"][0]["type"]["coding"][0]["code"] == "author"
    assert prov["activity"]["text"] == "draft edited"


def test_withdrawn_approval_is_preliminary_again_with_provenance() -> None:
    inp = _input()
    at = dt.datetime(2026, 1, 3, tzinfo=dt.UTC)
    review = DraftReviewData("withdrawn", "r1", "Dr R", at, ("Heart size normal.",))
    out = apply_draft_review(build_resources(inp), review, inp)
    report = next(r for r in out if r["id"] == ids.draft_report_id("1.2.9"))
    assert report["status"] == "preliminary" and "resultsInterpreter" not in report
    assert "withdrawn by Dr R" in report["conclusion"]
    prov = next(p for p in out if p["id"] == ids.provenance_id(f"review/DiagnosticReport/{report['id']}"))
    assert prov["agent"][0]["type"]["coding"][0]["code"] == "performer"
    assert prov["activity"]["text"] == "draft approval withdrawn" and prov["recorded"].startswith(
        "2026-01-03"
    )
    from gateway.fhir.validate import validate_resource

    for resource in out:
        validate_resource(resource, "R4")
