"""An EMR's view: fhirpy against a real uvicorn server searches reports and follows results to images."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fhir_seed import STUDY_UID, TOKEN, publish_input, seed_index
from fhirpy import SyncFHIRClient
from starlette.applications import Starlette

from gateway.fhir.api import build_fhir_routes
from gateway.fhir.mapping import build_resources
from gateway.fhir.store import save_resources
from gateway.index.db import open_index
from gateway.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def published_sqlite(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """One back end is enough for the client test; the API tests cover both."""
    sessions = open_index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    study_fk = seed_index(sessions, tmp_path)
    resources = build_resources(publish_input())
    with sessions.begin() as session:
        save_resources(session, resources, study_fk=study_fk)
    yield {"sessions": sessions, "resources": resources}
    sessions.kw["bind"].dispose()


@pytest.fixture
def server(published_sqlite: dict[str, Any], tmp_path: Path) -> Iterator[str]:
    settings = Settings.load(None, data_dir=tmp_path / "data")
    app = Starlette(routes=build_fhir_routes(published_sqlite["sessions"], settings, TOKEN))
    port = _free_port()
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(5)


def test_fhirpy_follows_report_to_sop_instance(server: str, published_sqlite: dict[str, Any]) -> None:
    client = SyncFHIRClient(f"{server}/fhir", authorization=f"Bearer {TOKEN}")
    patient = next(r["id"] for r in published_sqlite["resources"] if r["resourceType"] == "Patient")
    reports = client.resources("DiagnosticReport").search(patient=patient, category="LP29684-5").fetch_all()
    assert len(reports) == 1
    linked: dict[str, str] = {}
    for ref in reports[0]["result"]:
        obs = client.reference(reference=ref["reference"]).to_resource()
        for source in obs.get("derivedFrom", []):
            media = client.reference(reference=source["reference"]).to_resource()
            linked[obs["valueString"]] = media["identifier"][0]["value"]
    assert linked == {"右肺上叶见结节（Se 2 Im 5）。": f"urn:oid:{STUDY_UID}.2.5"}
