"""Real FHIR clients (fhirpy, SMART's fhirclient, and fhir-kit-client on Node) against a real uvicorn
server, authenticated with a SMART Backend Services token obtained with a private key: search with
_include, paging, count(), read, vread, history.

fhir-kit-client runs as ``tests/node/fhir_kit_client.mjs`` (installed by scripts/setup.sh with npm ci); it
discovers the token URL, signs its own client assertion (RS384 and ES384) and prints what it saw."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fhir_seed import publish_input, seed_index
from fhirpy import SyncFHIRClient
from smart_client import CLIENT_ID, client_keys, run_fhir_kit_client, smart_token
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
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    sessions = open_index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    study_fk = seed_index(sessions, tmp_path)
    resources = build_resources(publish_input())
    with sessions.begin() as session:
        save_resources(session, resources, study_fk=study_fk)
    keys = client_keys(tmp_path)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings.load(
        None,
        data_dir=tmp_path / "data",
        http={"public_base_url": base},
        auth={"clients": [{"client_id": CLIENT_ID, "jwks": keys.jwks}]},
    )
    app = Starlette(routes=build_fhir_routes(sessions, settings, "unused-static-token"))
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    token = smart_token(base, keys, "system/*.rs")
    yield {"base": f"{base}/fhir", "token": token, "resources": resources, "keys": keys}
    srv.should_exit = True
    thread.join(5)
    sessions.kw["bind"].dispose()


def _id(resources: list[dict[str, Any]], rtype: str) -> str:
    return next(r["id"] for r in resources if r["resourceType"] == rtype)


def test_fhirpy(served: dict[str, Any]) -> None:
    client = SyncFHIRClient(served["base"], authorization=f"Bearer {served['token']}")
    pid, rid = _id(served["resources"], "Patient"), _id(served["resources"], "DiagnosticReport")
    observations = client.resources("Observation").search(patient=pid)
    n = observations.count()
    assert n == sum(1 for r in served["resources"] if r["resourceType"] == "Observation") and n >= 2
    assert len(observations.limit(1).fetch_all()) == n  # follows the next links page by page
    bundle = (
        client.resources("DiagnosticReport").search(_id=rid).include("DiagnosticReport", "result").fetch_raw()
    )
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes.count("match") == 1 and modes.count("include") == n
    report = client.reference("DiagnosticReport", rid).to_resource()
    assert report["id"] == rid
    vread = client.execute(f"DiagnosticReport/{rid}/_history/1", method="get")
    assert vread["meta"]["versionId"] == "1"
    history = client.execute(f"DiagnosticReport/{rid}/_history", method="get")
    assert history["type"] == "history" and history["total"] == 1
    with pytest.raises(Exception, match=r"401|login|bearer"):
        SyncFHIRClient(served["base"]).resources("DiagnosticReport").count()


def test_smart_fhirclient(served: dict[str, Any]) -> None:
    from fhirclient.models.bundle import Bundle
    from fhirclient.models.diagnosticreport import DiagnosticReport
    from fhirclient.models.observation import Observation
    from fhirclient.server import FHIRServer

    server = FHIRServer(None, base_uri=served["base"] + "/")
    server.session.headers["Authorization"] = f"Bearer {served['token']}"
    pid, rid = _id(served["resources"], "Patient"), _id(served["resources"], "DiagnosticReport")
    report = DiagnosticReport.read(rid, server)
    assert report.id == rid and report.status == "final"
    first = DiagnosticReport.read_from(f"DiagnosticReport/{rid}/_history/1", server)
    assert first.meta.versionId == "1"
    history = Bundle(server.request_json(f"DiagnosticReport/{rid}/_history"))
    assert history.type == "history" and history.total == 1
    found = DiagnosticReport.where({"patient": pid, "_include": "DiagnosticReport:result"}).perform(server)
    kinds = [type(e.resource).__name__ for e in found.entry]
    assert kinds.count("DiagnosticReport") == 1 and kinds.count("Observation") >= 2
    paged = list(Observation.where({"patient": pid, "_count": "1"}).perform_resources_iter(server))
    assert len(paged) == kinds.count("Observation")


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_fhir_kit_client(served: dict[str, Any], alg: str) -> None:
    pid, rid = _id(served["resources"], "Patient"), _id(served["resources"], "DiagnosticReport")
    n = sum(1 for r in served["resources"] if r["resourceType"] == "Observation")
    seen = run_fhir_kit_client(served["base"], served["keys"], alg, pid, rid)
    assert seen["include"].count(["DiagnosticReport", "match"]) == 1
    assert seen["include"].count(["Observation", "include"]) == n >= 2
    # _count=1 pages: one Observation a page, every Observation once, by following the next links.
    assert [len(p) for p in seen["pages"]] == [1] * n
    assert len({i for p in seen["pages"] for i in p}) == n
    assert seen["read"] == {"id": rid, "status": "final", "versionId": "1"}
    assert seen["vread"] == {"id": rid, "versionId": "1"}
    assert seen["history"] == {"type": "history", "total": 1, "entries": 1}
    assert seen["typeHistory"]["type"] == "history" and seen["typeHistory"]["entries"] >= 1
