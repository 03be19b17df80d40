"""Content of the mapped resources: valid XHTML ids, name order from the value's script and PN component
groups, no empty arrays, placeholder or invalid DICOM dates dropped with a warning (no patient data)."""

from __future__ import annotations

import base64
import dataclasses
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import pytest
from fhir_seed import document, publish_input, study_data

from gateway.fhir.mapping import PatientData, build_resources, date_warnings, patient_resource
from gateway.fhir.validate import validate_resource

XHTML = "{http://www.w3.org/1999/xhtml}"


def _report(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in resources if r["resourceType"] == "DiagnosticReport")


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids += [v or "" for k, v in attrs if k == "id"]


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_narrative_and_rendition_ids_are_unique(version: str) -> None:
    text = "右肺上叶见结节（Se 2 Im 5）。结节边缘光整（Se 2 Im 5）。另一处同见（Se 2 Im 5）。"
    doc = document(text)
    [ref] = doc["paragraphs"][0]["figure_refs"]
    starts = [i for i in range(len(text)) if text.startswith("Se 2 Im 5", i)]
    doc["paragraphs"][0]["figure_refs"] = [{**ref, "start": i, "end": i + 9} for i in starts]
    report = _report(build_resources(publish_input(doc, version=version)))
    div = ET.fromstring(report["text"]["div"])
    ids = [el.get("id") for el in div.iter() if el.get("id")]
    assert ids and len(ids) == len(set(ids)), ids
    markers = [el for el in div.iter() if (el.get("class") or "").startswith("imr-ref-")]
    assert len(markers) == 3
    html = next(f for f in report["presentedForm"] if f["contentType"] == "text/html")
    parser = _Ids()
    parser.feed(base64.b64decode(html["data"]).decode("utf-8"))
    assert parser.ids and len(parser.ids) == len(set(parser.ids))


def _names(pn: str) -> list[dict[str, Any]]:
    return list(patient_resource(PatientData("P1", "", pn)).get("name", []))


def test_a_patient_without_a_name_says_why() -> None:
    """US Core Patient name 1..* (us-core-6): no PatientName → a name holding only a data-absent-reason."""
    from fhir_rules import rule_errors

    for pn in ("", "^"):
        patient = patient_resource(PatientData("P1", "", pn, system="urn:x"))
        assert patient["name"] == [
            {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                        "valueCode": "unknown",
                    }
                ]
            }
        ]
        assert rule_errors([patient], "R4") == []
    assert rule_errors([patient_resource(PatientData("P1", "", "Doe^Jane", system="urn:x"))], "R4") == []


def test_name_order_follows_the_script_not_ascii() -> None:
    [latin] = _names("Müller^Jürgen")
    assert latin["text"] == "Jürgen Müller" and latin["family"] == "Müller" and latin["given"] == ["Jürgen"]
    [han] = _names("王^小东")
    assert han["text"] == "王小东"
    [hangul] = _names("홍^길동")
    assert hangul["text"] == "홍길동"


def test_pn_component_groups_become_representations() -> None:
    names = _names("Yamada^Tarou=山田^太郎=やまだ^たろう")
    assert [n["text"] for n in names] == ["Tarou Yamada", "山田太郎", "やまだ たろう"]
    codes = [n["extension"][0]["valueCode"] for n in names]
    assert codes == ["ABC", "IDE", "SYL"]
    assert all(
        n["extension"][0]["url"] == "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
        for n in names
    )
    # An empty alphabetic group with an ideographic one: only the ideographic name.
    [only] = _names("=李^雷")
    assert only["text"] == "李雷" and only["extension"][0]["valueCode"] == "IDE"
    validate_resource(patient_resource(PatientData("P1", "", "Yamada^Tarou=山田^太郎=やまだ^たろう")))


def _empty_paths(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        out = [path] if not value else []
        for k, v in value.items():
            out += _empty_paths(v, f"{path}.{k}")
        return out
    if isinstance(value, list):
        out = [path] if not value else []
        for i, v in enumerate(value):
            out += _empty_paths(v, f"{path}[{i}]")
        return out
    return [path] if value == "" else []


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_no_empty_arrays_objects_or_strings(version: str) -> None:
    bare = dataclasses.replace(
        study_data(),
        accession_number=None,
        description=None,
        study_time=None,
        patient=PatientData("P1", "", None, None, None),
    )
    for inp in (
        publish_input(version=version),
        dataclasses.replace(publish_input(document("No text reference here."), version=version), study=bare),
    ):
        for resource in build_resources(inp):
            assert _empty_paths(resource) == [], resource["resourceType"]


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_placeholder_and_invalid_dates_are_dropped_with_a_warning(version: str) -> None:
    study = dataclasses.replace(
        study_data(),
        study_date="20261340",
        patient=PatientData("PAT-42", "", "Invented^Person", "00000000", "F"),
    )
    inp = dataclasses.replace(publish_input(version=version), study=study)
    resources = build_resources(inp)
    for resource in resources:
        validate_resource(resource, version)
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    assert "birthDate" not in patient
    assert "started" not in next(r for r in resources if r["resourceType"] == "ImagingStudy")
    # US Core effective[x] 1..1: with no valid date at all, a data-absent-reason says so.
    report = _report(resources)
    assert "effectiveDateTime" not in report
    assert report["_effectiveDateTime"]["extension"][0]["valueCode"] == "unknown"
    warnings = date_warnings(study)
    assert sorted(w.split()[0] for w in warnings) == ["PatientBirthDate", "StudyDate"]
    text = " ".join(warnings)
    assert "00000000" not in text and "20261340" not in text and "PAT-42" not in text
    assert "Invented" not in text
    # A valid date and time is kept; a valid date with an invalid time keeps the date.
    ok = dataclasses.replace(study_data(), study_time="256100")
    assert date_warnings(ok) == ["StudyTime is not a valid time; only the date is used"]


def test_a_validation_failure_names_the_element_not_the_value() -> None:
    from gateway.fhir.errors import InvalidResource

    bad = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-13-45-Invented"}
    with pytest.raises(InvalidResource) as err:
        validate_resource(bad)
    assert "birthDate" in str(err.value) and "Invented" not in str(err.value)


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_tied_neighbour_slices_show_as_plus_minus(version: str) -> None:
    from fhir_seed import STUDY_UID

    inp = publish_input(version=version)
    [link] = [x for x in inp.links if x.sop_instance_uid == f"{STUDY_UID}.2.5"]
    tied = dataclasses.replace(
        link,
        detail={
            **link.detail,
            "neighbours": [
                {"sop_instance_uid": f"{STUDY_UID}.2.4", "score": 0.91},
                {"sop_instance_uid": f"{STUDY_UID}.2.6", "score": 0.9},
            ],
        },
    )
    inp = dataclasses.replace(inp, links=tuple(tied if x is link else x for x in inp.links))
    resources = build_resources(inp)
    for r in resources:
        validate_resource(r, version)
    report = _report(resources)
    assert "slice 5 (±1)" in report["text"]["div"]
    html = next(f for f in report["presentedForm"] if f["contentType"] == "text/html")
    page = base64.b64decode(html["data"]).decode("utf-8")
    assert "slice 5 (±1)" in page and 'class="imr-ref-' in page
    obs = [r for r in resources if r["resourceType"] == "Observation" and "derivedFrom" in r]
    assert any("slice 5 (±1)" in d.get("display", "") for o in obs for d in o["derivedFrom"])
    if version == "R5":
        [sel] = [r for r in resources if r["resourceType"] == "ImagingSelection" and "instance" in r]
        assert [i["uid"] for i in sel["instance"]] == [f"{STUDY_UID}.2.{n}" for n in (5, 4, 6)]
    # Without neighbours nothing says ±.
    plain = _report(build_resources(publish_input(version=version)))
    assert "±" not in plain["text"]["div"]


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_effective_falls_back_to_the_series_dates_when_study_date_is_invalid(version: str) -> None:
    study = dataclasses.replace(
        study_data(),
        study_date="20261340",
        other_dates=(("00000000", None), ("20260109", "081500"), ("20260110", None)),
    )
    inp = dataclasses.replace(publish_input(version=version), study=study)
    resources = build_resources(inp)
    for resource in resources:
        validate_resource(resource, version)
    report = _report(resources)
    assert report["effectiveDateTime"] == "2026-01-09T08:15:00+00:00" and "_effectiveDateTime" not in report
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    assert observations and {o["effectiveDateTime"] for o in observations} == {"2026-01-09T08:15:00+00:00"}
    # A valid StudyDate wins over every other date.
    valid = dataclasses.replace(study, study_date="20260110", study_time=None)
    kept = _report(build_resources(dataclasses.replace(inp, study=valid)))
    assert kept["effectiveDateTime"] == "2026-01-10"
