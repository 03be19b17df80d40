"""The FHIR REST API over a real index (SQLite and PostgreSQL) through Starlette's TestClient."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fhir_seed import STUDY_UID, TOKEN, document, publish_input
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
    app = Starlette(routes=build_fhir_routes(published["sessions"], settings, TOKEN))
    return TestClient(app)


def _report_id(published: dict[str, Any]) -> str:
    return next(r["id"] for r in published["resources"] if r["resourceType"] == "DiagnosticReport")


def _patient(published: dict[str, Any]) -> str:
    return next(r["id"] for r in published["resources"] if r["resourceType"] == "Patient")


def test_metadata_is_public_and_truthful(client: TestClient) -> None:
    res = client.get("/fhir/metadata")
    assert res.status_code == 200 and res.headers["content-type"].startswith("application/fhir+json")
    body = res.json()
    assert body["fhirVersion"] == "4.0.1"
    dr = next(r for r in body["rest"][0]["resource"] if r["type"] == "DiagnosticReport")
    assert {"patient", "identifier", "category", "code", "date", "status", "_lastUpdated", "study"} <= {
        p["name"] for p in dr["searchParam"]
    }
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    CapabilityStatement.model_validate(body)


BAD_AUTH: list[dict[str, str]] = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}]


def test_everything_else_needs_the_token(client: TestClient, published: dict[str, Any]) -> None:
    for headers, path in (
        (h, p)
        for h in BAD_AUTH
        for p in (
            f"/fhir/DiagnosticReport/{_report_id(published)}",
            "/fhir/DiagnosticReport",
            f"/images/{STUDY_UID}.2.5.png",
        )
    ):
        res = client.get(path, headers=headers)
        assert res.status_code == 401
        assert res.headers["www-authenticate"].startswith("Bearer")
        assert res.json()["resourceType"] == "OperationOutcome"


def test_read_every_type(client: TestClient, published: dict[str, Any]) -> None:
    for resource in published["resources"]:
        res = client.get(f"/fhir/{resource['resourceType']}/{resource['id']}", headers=AUTH)
        assert res.status_code == 200, resource["resourceType"]
        assert res.json()["meta"]["versionId"] == "1"
        assert res.headers["etag"] == 'W/"1"'
    missing = client.get("/fhir/DiagnosticReport/nope", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["issue"][0]["code"] == "not-found"
    assert client.get("/fhir/Banana/1", headers=AUTH).status_code == 404
    assert client.post("/fhir/DiagnosticReport", headers=AUTH, json={}).status_code == 405


def test_binary_pdf_natively(client: TestClient, published: dict[str, Any]) -> None:
    binary = next(r for r in published["resources"] if r["resourceType"] == "Binary")
    res = client.get(f"/fhir/Binary/{binary['id']}", headers={**AUTH, "Accept": "application/pdf"})
    assert res.status_code == 200 and res.content == b"%PDF-1.4 test\n"


def _ids(bundle: dict[str, Any]) -> list[str]:
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def test_search_diagnostic_report(client: TestClient, published: dict[str, Any]) -> None:
    rid, pid = _report_id(published), _patient(published)
    hits = {
        f"patient={pid}",
        f"patient=Patient/{pid}",
        f"subject=Patient/{pid}&category=http://loinc.org|LP29684-5",
        f"patient={pid}&category=RAD&date=ge2026-01-01",
        f"patient={pid}&code=http://loinc.org|18748-4",
        f"patient={pid}&status=final,amended",
        "identifier=ACC-42",
        "identifier=http://terminology.hl7.org/CodeSystem/v2-0203|ACC-42",
        "identifier=urn:dicom:uid|urn:oid:1.2.826.0.1.3680043.10.999.9",
        "date=2026-01-10",
        "date=2026-01",
        "_lastUpdated=ge2026-01-10T00:00:00Z",
        f"study={STUDY_UID}",
        f"study=urn:oid:{STUDY_UID}",
    }
    misses = {
        "patient=other",
        "status=preliminary",
        "date=lt2026-01-10",
        "identifier=ACC-4%",
        "code=12345-6",
        "_lastUpdated=lt2026-01-01",
        "study=1.2.3",
    }
    for query in hits:
        res = client.get(f"/fhir/DiagnosticReport?{query}", headers=AUTH)
        assert res.status_code == 200, (query, res.text)
        assert _ids(res.json()) == [rid], query
    for query in misses:
        assert _ids(client.get(f"/fhir/DiagnosticReport?{query}", headers=AUTH).json()) == [], query


def test_search_imaging_study(client: TestClient, published: dict[str, Any]) -> None:
    bundle = client.get(
        f"/fhir/ImagingStudy?identifier=urn:dicom:uid|urn:oid:{STUDY_UID}", headers=AUTH
    ).json()
    assert len(_ids(bundle)) == 1
    pid = _patient(published)
    assert len(_ids(client.get(f"/fhir/ImagingStudy?patient={pid}", headers=AUTH).json())) == 1


REFUSED = [
    "foo=1",
    "patient:missing=true",
    "date=yesterday",
    "date=2026-01-10T10:00",
    "_count=-1",
    "_count=abc",
    "category=",
    "patient=Practitioner/1",
    "_sort=status",
    "_include=DiagnosticReport:specimen",
    "_include=*",
    "_revinclude=AuditEvent:entity",
    "_summary=maybe",
    "_elements=status,1bad",
    "_total=exact",
    "_summary=true&_elements=status",
]


def test_query_parser_refuses_what_it_does_not_understand(client: TestClient) -> None:
    for query in REFUSED:
        res = client.get(f"/fhir/DiagnosticReport?{query}", headers=AUTH)
        assert res.status_code == 400, query
        assert res.json()["resourceType"] == "OperationOutcome"


def test_paging(client: TestClient) -> None:
    url = "/fhir/Observation?_count=1"
    seen: list[str] = []
    while url:
        bundle = client.get(url, headers=AUTH).json()
        seen += _ids(bundle)
        assert bundle["total"] == 2
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = nxt[0].removeprefix("http://testserver") if nxt else ""
    assert len(seen) == len(set(seen)) == 2


def test_amended_report_gets_a_new_version_and_keeps_history(
    client: TestClient, published: dict[str, Any]
) -> None:
    sessions, rid = published["sessions"], _report_id(published)
    # Re-publishing the same content adds no version.
    with sessions.begin() as session:
        summary = save_resources(session, build_resources(publish_input()), study_fk=published["study_fk"])
    assert summary.created == summary.updated == 0
    amended = build_resources(publish_input(document("右肺上叶见结节（Se 2 Im 5），较前增大。余未见异常。")))
    with sessions.begin() as session:
        save_resources(
            session, amended, study_fk=published["study_fk"], now=dt.datetime(2026, 1, 11, tzinfo=dt.UTC)
        )
    current = client.get(f"/fhir/DiagnosticReport/{rid}", headers=AUTH).json()
    assert current["meta"]["versionId"] == "2" and current["status"] == "amended"
    first = client.get(f"/fhir/DiagnosticReport/{rid}/_history/1", headers=AUTH).json()
    assert first["status"] == "final" and first["meta"]["versionId"] == "1"
    history = client.get(f"/fhir/DiagnosticReport/{rid}/_history", headers=AUTH).json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert client.get(f"/fhir/DiagnosticReport/{rid}/_history/9", headers=AUTH).status_code == 404
    # Only the current version is found by search.
    assert _ids(client.get("/fhir/DiagnosticReport?status=amended", headers=AUTH).json()) == [rid]


def test_rendered_image(client: TestClient) -> None:
    res = client.get(f"/images/{STUDY_UID}.2.5.png?size=32", headers=AUTH)
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    from io import BytesIO

    from PIL import Image

    assert max(Image.open(BytesIO(res.content)).size) == 32
    assert client.get(f"/images/{STUDY_UID}.2.5.jpeg", headers=AUTH).headers["content-type"] == "image/jpeg"
    assert client.get("/images/1.2.3.png", headers=AUTH).status_code == 404
    assert client.get(f"/images/{STUDY_UID}.2.5.png?size=huge", headers=AUTH).status_code == 400


def test_rendered_image_honours_the_pixel_limit_setting(published: dict[str, Any], tmp_path: Any) -> None:
    import numpy as np
    import pydicom
    from sqlalchemy import select

    from gateway.index.models import Instance

    with published["sessions"]() as session:
        path = session.scalars(
            select(Instance.path).where(Instance.sop_instance_uid == f"{STUDY_UID}.2.5")
        ).one()
    ds = pydicom.dcmread(path)  # made larger than the limit below: 200 x 200 = 40,000 pixels
    ds.Rows = ds.Columns = 200
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.full((200, 200), 90, dtype=np.uint8).tobytes()
    ds.save_as(path)
    for limit, ok in ((20_000, False), (40_000, True)):
        settings = Settings.load(None, data_dir=tmp_path / "data", imaging={"max_pixels": limit})
        app = Starlette(routes=build_fhir_routes(published["sessions"], settings, TOKEN))
        res = TestClient(app).get(f"/images/{STUDY_UID}.2.5.png?size=32", headers=AUTH)
        assert (res.status_code == 200) is ok, res.text
        assert ok or "pixel limit" in res.text
