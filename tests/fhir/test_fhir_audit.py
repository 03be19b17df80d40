"""The audit trail: every read and search is recorded (who, what, when, outcome) and is readable as FHIR
AuditEvent by auditors only; nothing of it, and no patient data, reaches the log at INFO. CORS for
configured origins."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fhir_seed import TOKEN
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.fhir.api import build_fhir_routes
from gateway.fhir.validate import validate_resource
from gateway.settings import Settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}
AUDITOR = {"Authorization": "Bearer auditor-secret"}


def _client(published: dict[str, Any], tmp_path: Any, **settings: Any) -> TestClient:
    cfg = Settings.load(None, data_dir=tmp_path / "data", **settings)
    return TestClient(Starlette(routes=build_fhir_routes(published["sessions"], cfg, TOKEN)))


def _rid(published: dict[str, Any], rtype: str) -> str:
    return next(r["id"] for r in published["resources"] if r["resourceType"] == rtype)


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_reads_and_searches_are_audited_and_auditors_read_them(
    published: dict[str, Any], tmp_path: Any, version: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(published, tmp_path, fhir={"version": version, "audit_token": "auditor-secret"})
    rid, pid = _rid(published, "DiagnosticReport"), _rid(published, "Patient")
    with caplog.at_level(logging.INFO):
        assert client.get(f"/fhir/DiagnosticReport/{rid}", headers=AUTH).status_code == 200
        assert client.get("/fhir/DiagnosticReport?patient.identifier=PAT-42", headers=AUTH).status_code == 200
        assert client.get(f"/fhir/DiagnosticReport/{rid}").status_code == 401
    # The gateway's own loggers (the test client's httpx logs its URLs; uvicorn runs with access_log=False).
    ours = [r for r in caplog.records if not r.name.startswith("httpx")]
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in ours)
    assert "PAT-42" not in logged and "Invented" not in logged

    # Clinical clients cannot read the trail; auditors read nothing else.
    assert client.get("/fhir/AuditEvent", headers=AUTH).status_code == 403
    assert client.get(f"/fhir/DiagnosticReport/{rid}", headers=AUDITOR).status_code == 403

    bundle = client.get(f"/fhir/AuditEvent?patient={pid}", headers=AUDITOR).json()
    events = [e["resource"] for e in bundle["entry"]]
    assert len(events) == 2  # the read and the search named this patient; the 401 returned nothing
    for event in events:
        validate_resource(event, version)
        assert event["agent"][0]["who"]["identifier"]["value"] == "static-api-token"
    refs = {e["what"]["reference"] for ev in events for e in ev.get("entity", []) if "what" in e}
    assert f"DiagnosticReport/{rid}" in refs and f"Patient/{pid}" in refs
    everything = client.get("/fhir/AuditEvent?agent=anonymous", headers=AUDITOR).json()
    [denied] = [e["resource"] for e in everything["entry"]]
    outcome = denied["outcome"] if version == "R4" else denied["outcome"]["code"]["code"]
    assert outcome == "4"
    one = client.get(f"/fhir/AuditEvent/{denied['id']}", headers=AUDITOR)
    assert one.status_code == 200 and one.json()["id"] == denied["id"]
    assert client.get("/fhir/AuditEvent?foo=1", headers=AUDITOR).status_code == 400


def test_without_an_audit_token_nobody_reads_the_trail(published: dict[str, Any], tmp_path: Any) -> None:
    client = _client(published, tmp_path)
    assert client.get("/fhir/AuditEvent", headers=AUTH).status_code == 403
    assert client.get("/fhir/AuditEvent", headers={"Authorization": "Bearer "}).status_code == 401


def test_cors_for_configured_origins_only(published: dict[str, Any], tmp_path: Any) -> None:
    client = _client(published, tmp_path, http={"cors_origins": ["https://emr.example.org"]})
    ok = client.get("/fhir/DiagnosticReport", headers={**AUTH, "Origin": "https://emr.example.org"})
    assert ok.headers["access-control-allow-origin"] == "https://emr.example.org"
    assert "ETag" in ok.headers.get("access-control-expose-headers", "") or ok.status_code == 200
    other = client.get("/fhir/DiagnosticReport", headers={**AUTH, "Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers
    preflight = client.options(
        "/fhir/DiagnosticReport",
        headers={
            "Origin": "https://emr.example.org",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://emr.example.org"
    default = _client(published, tmp_path)
    res = default.get("/fhir/DiagnosticReport", headers={**AUTH, "Origin": "https://emr.example.org"})
    assert "access-control-allow-origin" not in res.headers


@pytest.mark.parametrize("durable", [False, True])
def test_audit_rows_commit_without_leaving_the_connection_relaxed(
    sqlite_index_url: str, engines: Any, durable: bool
) -> None:
    """A relaxed audit commit (SQLite synchronous=NORMAL) must not leak into the pooled connection that the
    SCP's next write takes: the index stays synchronous=FULL."""
    from sqlalchemy import func, select

    from gateway.fhir.audit import record
    from gateway.index.models import AuditEvent

    sessions = engines.open(sqlite_index_url)
    for _ in range(3):
        record(
            sessions,
            client_id="c",
            action="read",
            resource_type="Patient",
            query="/fhir/Patient/1",
            outcome=200,
            content={"resourceType": "Patient", "id": "1"},
            durable=durable,
        )
    engine = sessions.kw["bind"]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 3
        row = session.scalars(select(AuditEvent)).first()
        assert row is not None and row.patients == "Patient/1" and row.recorded is not None
