"""Worklist filters, a failed study's reason and retry, and role checks, through the real routes on both
index back ends (Starlette's TestClient; the browser flows are in test_ui_browser.py)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.dicomweb.access import Access
from gateway.index.models import Job, Patient, Series, Study, UiAuditEvent
from gateway.settings import Settings
from gateway.ui.accounts import add_user
from gateway.ui.routes import build_ui_routes


def _seed(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        patient = Patient(patient_id="P1", issuer="")
        session.add(patient)
        session.flush()
        for i, (state, date, mod) in enumerate([("done", "20240102", "CT"), ("failed", "20240301", "DX")]):
            study = Study(
                study_instance_uid=f"1.2.3.{i}",
                patient_fk=patient.id,
                accession_number=f"ACC{i}",
                study_date=date,
                description=f"study {i}",
                state=state,
                version=1,
                state_reason="read_report: encrypted PDF" if state == "failed" else None,
            )
            session.add(study)
            session.flush()
            session.add(
                Series(series_instance_uid=f"1.2.3.{i}.1", study_fk=study.id, modality=mod, series_number=1)
            )
            if state == "failed":
                session.add(Job(study_fk=study.id, stage="read_report", study_version=1, state="dead"))
        add_user(session, "reader", "reader-password", role="reader")
        add_user(session, "admin", "admin-password", role="administrator")


def _client(sessions: sessionmaker[Session], settings: Settings) -> TestClient:
    app = Starlette(routes=build_ui_routes(sessions, settings, Access("t", signed_url_lifetime=60)))
    return TestClient(app, base_url="http://127.0.0.1")


def _login(client: TestClient, user: str, password: str) -> str:
    page = client.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = client.post(
        "/ui/login",
        data={"username": user, "password": password, "csrf": token.group(1), "next": "/ui/worklist"},
    )
    assert r.status_code == 200 and "Worklist" in r.text, r.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', r.text)
    assert csrf is not None
    return csrf.group(1)


def test_worklist_filters_failed_reason_and_retry(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    _seed(sessions)
    client = _client(sessions, settings)
    assert client.get("/ui/worklist", follow_redirects=False).status_code == 303  # login first
    csrf = _login(client, "reader", "reader-password")
    page = client.get("/ui/worklist").text
    assert "ACC0" in page and "ACC1" in page
    assert "encrypted PDF" in page and "/retry" not in page  # a reader sees the reason, not the button
    assert "ACC0" not in client.get("/ui/worklist?state=failed").text
    assert "ACC1" not in client.get("/ui/worklist?modality=CT").text
    assert "ACC0" not in client.get("/ui/worklist?from=2024-02-01").text
    assert "ACC1" not in client.get("/ui/worklist?q=ACC0").text
    with sessions() as session:
        job_id = session.scalar(select(Job.id))
    assert client.post("/ui/study/1.2.3.1/retry", data={"job": str(job_id), "csrf": csrf}).status_code == 403

    admin = _client(sessions, settings)
    csrf = _login(admin, "admin", "admin-password")
    assert "/ui/study/1.2.3.1/retry" in admin.get("/ui/worklist").text
    assert (
        admin.post("/ui/study/1.2.3.1/retry", data={"job": str(job_id), "csrf": "wrong"}).status_code == 403
    )
    r = admin.post("/ui/study/1.2.3.1/retry", data={"job": str(job_id), "csrf": csrf})
    assert r.status_code == 200
    with sessions() as session:
        assert session.get(Job, job_id).state == "pending"  # type: ignore[union-attr]
        assert (
            session.scalar(select(Study.state).where(Study.study_instance_uid == "1.2.3.1")) == "processing"
        )
        actions = set(session.scalars(select(UiAuditEvent.action)))
    assert {"user-add", "login", "retry"} <= actions


def test_wrong_password_and_logout(sessions: sessionmaker[Session], settings: Settings) -> None:
    _seed(sessions)
    client = _client(sessions, settings)
    page = client.get("/ui/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    bad = client.post(
        "/ui/login", data={"username": "reader", "password": "nope-nope", "csrf": token.group(1)}
    )
    assert bad.status_code == 401
    nobody = client.post("/ui/login", data={"username": "ghost", "password": "nope-nope", "csrf": "x"})
    assert nobody.status_code == 403  # the login form's own CSRF token
    csrf = _login(client, "reader", "reader-password")
    assert client.post("/ui/logout", data={"csrf": csrf}).status_code == 200
    assert client.get("/ui/worklist", follow_redirects=False).status_code == 303
