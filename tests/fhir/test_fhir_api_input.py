"""Malformed search input is a 400 OperationOutcome, never a 500; FHIR JSON has no empty arrays; the
bearer scheme is case-insensitive and an empty configured token admits nobody."""

from __future__ import annotations

from typing import Any

import pytest
from fhir_seed import STUDY_UID, TOKEN
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.fhir.api import build_fhir_routes
from gateway.settings import Settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _client(published: dict[str, Any], tmp_path: Any, token: str = TOKEN) -> TestClient:
    settings = Settings.load(None, data_dir=tmp_path / "data")
    return TestClient(Starlette(routes=build_fhir_routes(published["sessions"], settings, token)))


@pytest.fixture
def client(published: dict[str, Any], tmp_path: Any) -> TestClient:
    return _client(published, tmp_path)


def _rid(published: dict[str, Any]) -> str:
    return next(r["id"] for r in published["resources"] if r["resourceType"] == "DiagnosticReport")


def _empty_arrays(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _empty_arrays(v, f"{path}.{k}")]
    if isinstance(value, list):
        return (
            [path]
            if not value
            else [p for i, v in enumerate(value) for p in _empty_arrays(v, f"{path}[{i}]")]
        )
    return []


@pytest.mark.parametrize(
    "query",
    [
        "DiagnosticReport?status=cancelled",
        "DiagnosticReport?_count=0",
        "Observation?_count=0",
        "ImagingStudy?identifier=none|none",
    ],
)
def test_searchsets_have_no_empty_arrays(client: TestClient, query: str) -> None:
    res = client.get(f"/fhir/{query}", headers=AUTH)
    assert res.status_code == 200
    body = res.json()
    assert _empty_arrays(body) == []
    assert "entry" not in body
    if "_count=0" in query:
        assert body["total"] > 0


BAD = [
    "_count=%C2%B2",  # superscript two: str.isdigit() but not a number
    "_count=%D9%A1%D9%A2",  # Arabic-Indic digits
    "_offset=%EF%BC%91",  # fullwidth one
    "_offset=99999999999999999999999",
    "_count=99999999999999999999999",
    "date=9999-12-31",
    "date=ge9999-12-31T23:59:59Z",
    "_lastUpdated=9999-12-31",
    "&".join(["status=final"] * 1000),
    "&".join(["patient=Patient/abc"] * 1000),
    "status=" + ",".join(["final"] * 1000),
    "identifier=" + "x" * 2000,
]


def _asgi_get(app: Any, path: str, query: str) -> tuple[int, bytes]:
    """A GET straight through ASGI, for a query string longer than HTTP clients will send."""
    import asyncio

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {TOKEN}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.parametrize("name", ["identifier", "code", "patient", "date"])
def test_a_70000_character_value_is_400(client: TestClient, name: str) -> None:
    import json

    status, body = _asgi_get(client.app, "/fhir/DiagnosticReport", f"{name}=" + "x" * 70_000)
    assert status == 400 and json.loads(body)["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("query", BAD, ids=lambda q: q[:40])
def test_malformed_search_is_400(client: TestClient, query: str, caplog: pytest.LogCaptureFixture) -> None:
    res = client.get(f"/fhir/DiagnosticReport?{query}", headers=AUTH)
    assert res.status_code == 400, res.text[:500]
    body = res.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "error"
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("vid", ["%C2%B2", "%D9%A1", "99999999999999999999999", "1e3"])
def test_malformed_version_is_400(client: TestClient, published: dict[str, Any], vid: str) -> None:
    res = client.get(f"/fhir/DiagnosticReport/{_rid(published)}/_history/{vid}", headers=AUTH)
    assert res.status_code == 400 and res.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("size", ["%C2%B2", "%D9%A1%D9%A2%D9%A3", "99999999999999999999999"])
def test_malformed_image_size_is_400(client: TestClient, size: str) -> None:
    res = client.get(f"/images/{STUDY_UID}.2.5.png?size={size}", headers=AUTH)
    assert res.status_code == 400 and res.json()["resourceType"] == "OperationOutcome"


def test_bearer_scheme_is_case_insensitive(client: TestClient, published: dict[str, Any]) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        res = client.get(
            f"/fhir/DiagnosticReport/{_rid(published)}", headers={"Authorization": f"{scheme} {TOKEN}"}
        )
        assert res.status_code == 200, scheme


@pytest.mark.parametrize("header", ["", "Bearer ", "Bearer \xa0", "bearer  ", "Bearer\t"])
def test_an_empty_configured_token_admits_nobody(
    published: dict[str, Any], tmp_path: Any, header: str
) -> None:
    client = _client(published, tmp_path, token="")
    res = client.get(
        f"/fhir/DiagnosticReport/{_rid(published)}", headers={"Authorization": header.encode("latin-1")}
    )
    assert res.status_code == 401
