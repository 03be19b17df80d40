"""Search features EMR engines and IMR RAD-143 use: _include, _revinclude, _sort, _summary, _elements,
_total, POST _search, type history, conditional read (304), Allow on 405, XML → 406."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from fhir_seed import TOKEN, publish_input, study_data
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.fhir.api import build_fhir_routes
from gateway.fhir.mapping import build_resources
from gateway.fhir.store import save_resources
from gateway.settings import Settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(published: dict[str, Any], tmp_path: Any) -> TestClient:
    settings = Settings.load(None, data_dir=tmp_path / "data")
    return TestClient(Starlette(routes=build_fhir_routes(published["sessions"], settings, TOKEN)))


def _rid(published: dict[str, Any], rtype: str = "DiagnosticReport") -> str:
    return next(r["id"] for r in published["resources"] if r["resourceType"] == rtype)


def _entries(bundle: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


@pytest.mark.parametrize(
    ("include", "rtype"),
    [
        ("DiagnosticReport:result", "Observation"),
        ("DiagnosticReport:subject", "Patient"),
        ("DiagnosticReport:patient:Patient", "Patient"),
        ("DiagnosticReport:imaging-study", "ImagingStudy"),
        ("DiagnosticReport:based-on", "ServiceRequest"),
    ],
)
def test_include(client: TestClient, published: dict[str, Any], include: str, rtype: str) -> None:
    bundle = client.get(
        f"/fhir/DiagnosticReport?_id={_rid(published)}&_include={include}", headers=AUTH
    ).json()
    [match] = _entries(bundle, "match")
    included = _entries(bundle, "include")
    assert included and {r["resourceType"] for r in included} == {rtype}
    refs = {f"{r['resourceType']}/{r['id']}" for r in included}
    cited = {
        ref["reference"]
        for value in match.values()
        for ref in (value if isinstance(value, list) else [value])
        if isinstance(ref, dict) and "reference" in ref
    }
    assert refs <= cited
    assert bundle["total"] == 1  # included resources do not count


def test_revinclude_provenance(client: TestClient, published: dict[str, Any]) -> None:
    rid = _rid(published)
    bundle = client.get(
        f"/fhir/DiagnosticReport?_id={rid}&_revinclude=Provenance:target", headers=AUTH
    ).json()
    [prov] = _entries(bundle, "include")
    assert prov["resourceType"] == "Provenance"
    assert {"reference": f"DiagnosticReport/{rid}"} in prov["target"]


def _publish_second(published: dict[str, Any]) -> None:
    other = dataclasses.replace(
        study_data(), study_instance_uid="1.2.826.0.1.3680043.10.999.2", study_date="20250101"
    )
    inp = dataclasses.replace(publish_input(), study=other, issued=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    with published["sessions"].begin() as session:
        save_resources(
            session, build_resources(inp), study_fk=None, now=dt.datetime(2026, 1, 12, tzinfo=dt.UTC)
        )


@pytest.mark.parametrize(
    ("sort", "first_date"),
    [
        ("date", "2025-01-01"),
        ("-date", "2026-01-10"),
        ("_lastUpdated", "2026-01-10"),
        ("-_lastUpdated", "2025-01-01"),
        ("issued", "2025-01-01"),
        ("-issued", "2026-01-10"),
    ],
)
def test_sort(client: TestClient, published: dict[str, Any], sort: str, first_date: str) -> None:
    _publish_second(published)
    bundle = client.get(f"/fhir/DiagnosticReport?status=final&_sort={sort}", headers=AUTH).json()
    dates = [r["effectiveDateTime"][:10] for r in _entries(bundle, "match")]
    assert len(dates) == 2 and dates[0] == first_date, dates


def test_summary_count_total_and_elements(client: TestClient, published: dict[str, Any]) -> None:
    count = client.get("/fhir/Observation?_summary=count", headers=AUTH).json()
    assert count["total"] > 0 and "entry" not in count
    summary = client.get("/fhir/DiagnosticReport?_summary=true", headers=AUTH).json()
    [report] = _entries(summary, "match")
    assert "text" not in report and "presentedForm" not in report and report["status"]
    assert {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "SUBSETTED",
    } in report["meta"]["tag"]
    data = _entries(client.get("/fhir/DiagnosticReport?_summary=data", headers=AUTH).json(), "match")[0]
    assert "text" not in data and "presentedForm" in data
    elements = _entries(
        client.get("/fhir/DiagnosticReport?_elements=subject,issued", headers=AUTH).json(), "match"
    )[0]
    assert set(elements) == {"resourceType", "id", "meta", "status", "code", "subject", "issued"}
    read = client.get(f"/fhir/DiagnosticReport/{_rid(published)}?_summary=text", headers=AUTH).json()
    assert set(read) == {"resourceType", "id", "meta", "status", "code", "text"}
    none = client.get("/fhir/Observation?_total=none&_count=1", headers=AUTH).json()
    assert "total" not in none and any(link["relation"] == "next" for link in none["link"])


def test_post_search_is_the_same_search(client: TestClient, published: dict[str, Any]) -> None:
    pid = _rid(published, "Patient")
    got = client.post(
        "/fhir/DiagnosticReport/_search",
        data={"patient": pid, "_include": "DiagnosticReport:subject"},
        headers=AUTH,
    )
    assert got.status_code == 200
    want = client.get(f"/fhir/DiagnosticReport?patient={pid}&_include=DiagnosticReport:subject", headers=AUTH)
    assert [e["fullUrl"] for e in got.json()["entry"]] == [e["fullUrl"] for e in want.json()["entry"]]
    assert client.post("/fhir/DiagnosticReport/_search", data={"patient": pid}).status_code == 401
    bad = client.post(
        "/fhir/DiagnosticReport/_search", content=b"{}", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert bad.status_code == 400


def test_type_history(client: TestClient, published: dict[str, Any]) -> None:
    _publish_second(published)
    bundle = client.get("/fhir/DiagnosticReport/_history?_count=1", headers=AUTH).json()
    assert bundle["type"] == "history" and bundle["total"] == 2 and len(bundle["entry"]) == 1
    assert any(link["relation"] == "next" for link in bundle["link"])
    assert client.get("/fhir/DiagnosticReport/_history?patient=x", headers=AUTH).status_code == 400


def test_conditional_read(client: TestClient, published: dict[str, Any]) -> None:
    url = f"/fhir/DiagnosticReport/{_rid(published)}"
    first = client.get(url, headers=AUTH)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    res = client.get(url, headers={**AUTH, "If-None-Match": etag})
    assert res.status_code == 304 and res.content == b""
    assert client.get(url, headers={**AUTH, "If-None-Match": 'W/"99"'}).status_code == 200
    assert client.get(url, headers={**AUTH, "If-Modified-Since": modified}).status_code == 304
    earlier = "Mon, 05 Jan 2026 00:00:00 GMT"
    assert client.get(url, headers={**AUTH, "If-Modified-Since": earlier}).status_code == 200


def test_405_says_what_is_allowed_and_xml_is_406(client: TestClient, published: dict[str, Any]) -> None:
    res = client.put(f"/fhir/DiagnosticReport/{_rid(published)}", json={}, headers=AUTH)
    assert res.status_code == 405 and res.headers["Allow"] == "GET, HEAD"
    assert client.delete("/fhir/DiagnosticReport", headers=AUTH).headers["Allow"] == "GET, HEAD"
    xml = client.get("/fhir/DiagnosticReport", headers={**AUTH, "Accept": "application/fhir+xml"})
    assert xml.status_code == 406 and xml.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/DiagnosticReport?_format=xml", headers=AUTH).status_code == 406
    assert (
        client.get(f"/fhir/Patient/{_rid(published, 'Patient')}?_format=xml", headers=AUTH).status_code == 406
    )
    either = client.get(
        "/fhir/DiagnosticReport",
        headers={**AUTH, "Accept": "application/fhir+xml, application/fhir+json;q=0.9"},
    )
    assert either.status_code == 200


def test_patient_search_by_name_identifier_and_birthdate(
    client: TestClient, published: dict[str, Any]
) -> None:
    pid = _rid(published, "Patient")

    def ids(query: str) -> list[str]:
        res = client.get(f"/fhir/Patient?{query}", headers=AUTH)
        assert res.status_code == 200, res.text
        return [e["resource"]["id"] for e in res.json().get("entry", [])]

    # The seed name is "Invented^Person=试^验".
    assert ids("name=inv") == [pid] and ids("name=PERS") == [pid] and ids("family=试") == [pid]
    assert ids("name=nobody") == [] and ids("name=vented") == []  # starts-with, not contains
    assert ids("identifier=PAT-42") == [pid]
    assert ids("birthdate=1980-01-01") == [pid] and ids("birthdate=ge1981") == []


def test_chained_and_related_identifier_searches(client: TestClient, published: dict[str, Any]) -> None:
    rid = _rid(published)

    def ids(query: str) -> list[str]:
        res = client.get(f"/fhir/DiagnosticReport?{query}", headers=AUTH)
        assert res.status_code == 200, res.text
        return [
            e["resource"]["id"]
            for e in res.json().get("entry", [])
            if e["resource"]["status"] != "preliminary"
        ]

    assert ids("patient.identifier=PAT-42") == [rid]
    assert ids("patient.identifier=OTHER") == []
    assert ids("patient.name=invented") == [rid] and ids("patient.name=zzz") == []
    assert ids("based-on.identifier=ACC-42") == [rid] and ids("based-on.identifier=ACC-0") == []
    from fhir_seed import STUDY_UID

    assert ids(f"imaging-study.identifier=urn:dicom:uid|urn:oid:{STUDY_UID}") == [rid]
    obs = client.get("/fhir/Observation?date=2026-01-10&patient.identifier=PAT-42", headers=AUTH).json()
    assert obs["total"] > 0
    assert client.get("/fhir/Observation?date=2020", headers=AUTH).json()["total"] == 0


def test_patient_by_gender_and_name(client: TestClient, published: dict[str, Any]) -> None:
    """US Core Patient: gender+name (SHOULD); the seed patient is F."""
    pid = _rid(published, "Patient")

    def ids(query: str) -> list[str]:
        res = client.get(f"/fhir/Patient?{query}", headers=AUTH)
        assert res.status_code == 200, res.text
        return [e["resource"]["id"] for e in res.json().get("entry", [])]

    assert ids("gender=female&name=invented") == [pid]
    assert ids("gender=http://hl7.org/fhir/administrative-gender|female") == [pid]
    assert ids("gender=male&name=invented") == [] and ids("gender=male,female") == [pid]


def test_imaging_study_modality_and_started_chains(client: TestClient, published: dict[str, Any]) -> None:
    """IHE IMR RAD-143: DiagnosticReport by its study's modality and start; ImagingStudy by modality."""
    rid = _rid(published)

    def ids(query: str, rtype: str = "DiagnosticReport") -> list[str]:
        res = client.get(f"/fhir/{rtype}?{query}", headers=AUTH)
        assert res.status_code == 200, res.text
        return [
            e["resource"]["id"]
            for e in res.json().get("entry", [])
            if e["resource"].get("status") != "preliminary"
        ]

    dicom = "http://dicom.nema.org/resources/ontology/DCM"
    assert ids("imaging-study.modality=CT") == [rid]
    assert ids(f"imaging-study.modality={dicom}|CT") == [rid]
    assert ids("imaging-study.modality=MR") == [] and ids("imaging-study.modality=SR") == []
    assert ids("imaging-study.started=2026-01-10") == [rid]
    assert ids("imaging-study.started=ge2026-02") == []
    assert ids("imaging-study.started=lt2026-01-11&imaging-study.modality=CT,MR") == [rid]
    assert ids("modality=CT", "ImagingStudy") == [_rid(published, "ImagingStudy")]
    assert ids("modality=DOC", "ImagingStudy") == []
    bad = client.get("/fhir/DiagnosticReport?imaging-study.started=2026,2027", headers=AUTH)
    assert bad.status_code == 400


def test_capability_statement_says_exactly_what_is_supported(client: TestClient) -> None:
    body = client.get("/fhir/metadata").json()
    assert body["implementation"]["url"] == "http://testserver/fhir"
    rest = body["rest"][0]
    assert rest["security"]["service"]
    dr = next(r for r in rest["resource"] if r["type"] == "DiagnosticReport")
    assert {
        "DiagnosticReport:result",
        "DiagnosticReport:subject",
        "DiagnosticReport:imaging-study",
        "DiagnosticReport:based-on",
    } <= set(dr["searchInclude"])
    assert dr["searchRevInclude"] == ["Provenance:target"]
    assert {"patient.identifier", "patient.name", "based-on.identifier", "imaging-study.identifier"} <= {
        p["name"] for p in dr["searchParam"]
    }
    assert {"history-type", "search-type", "read", "vread"} <= {i["code"] for i in dr["interaction"]}
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {"name", "identifier", "birthdate"} <= {p["name"] for p in patient["searchParam"]}
    assert body["format"] == ["application/fhir+json", "json"]
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    CapabilityStatement.model_validate(body)
