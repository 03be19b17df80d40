"""Real FHIR clients (fhirpy, SMART's fhirclient, and fhir-kit-client on Node) against a real uvicorn
server, authenticated with a SMART Backend Services token obtained with a private key: search with
_include, paging, count(), read, vread, history.

fhir-kit-client runs as ``tests/node/fhir_kit_client.mjs`` (installed by scripts/setup.sh with npm ci); it
discovers the token URL, signs its own client assertion (RS384 and ES384) and prints what it saw."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fhir_seed import publish_input, seed_index
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
def served(tmp_path: Path) -> Iterator[dict[str, Any]]:
    sessions = open_index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    study_fk = seed_index(sessions, tmp_path)
    resources = build_resources(publish_input())
    with sessions.begin() as session:
        save_resources(session, resources, study_fk=study_fk)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "k1", "alg": "RS384"}
    ec_key = ec.generate_private_key(ec.SECP384R1())
    ec_public = {
        **json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())),
        "kid": "k2",
        "alg": "ES384",
    }
    pems = {}
    for alg, private in (("RS384", key), ("ES384", ec_key)):
        pem = tmp_path / f"{alg}.pem"
        pem.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        pems[alg] = pem
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings.load(
        None,
        data_dir=tmp_path / "data",
        http={"public_base_url": base},
        auth={"clients": [{"client_id": "emr", "jwks": {"keys": [public, ec_public]}}]},
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
    conf = httpx.get(f"{base}/fhir/.well-known/smart-configuration").json()
    assertion = jwt.encode(
        {
            "iss": "emr",
            "sub": "emr",
            "aud": conf["token_endpoint"],
            "exp": int(time.time()) + 240,
            "jti": str(uuid.uuid4()),
        },
        key,
        algorithm="RS384",
        headers={"kid": "k1"},
    )
    token = httpx.post(
        conf["token_endpoint"],
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "scope": "system/*.rs",
        },
    ).json()["access_token"]
    yield {"base": f"{base}/fhir", "token": token, "resources": resources, "keys": pems}
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


NODE_SCRIPT = Path(__file__).resolve().parents[1] / "node" / "fhir_kit_client.mjs"


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_fhir_kit_client(served: dict[str, Any], alg: str) -> None:
    if not (NODE_SCRIPT.parent / "node_modules" / "fhir-kit-client").is_dir():
        pytest.fail("tests/node/node_modules is missing: run scripts/setup.sh (npm ci --prefix tests/node)")
    pid, rid = _id(served["resources"], "Patient"), _id(served["resources"], "DiagnosticReport")
    n = sum(1 for r in served["resources"] if r["resourceType"] == "Observation")
    run = subprocess.run(
        ["node", str(NODE_SCRIPT)],
        env={
            **os.environ,
            "FHIR_BASE": served["base"],
            "CLIENT_ID": "emr",
            "KEY_FILE": str(served["keys"][alg]),
            "KID": "k1" if alg == "RS384" else "k2",
            "ALG": alg,
            "PATIENT": pid,
            "REPORT": rid,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["tokenUrl"].endswith("/auth/token")
    assert seen["token"]["type"].lower() == "bearer" and 0 < seen["token"]["expiresIn"] <= 300
    assert set(seen["token"]["scope"].split()) == {"system/DiagnosticReport.rs", "system/Observation.rs"}
    assert seen["withoutToken"] == 401
    assert seen["include"].count(["DiagnosticReport", "match"]) == 1
    assert seen["include"].count(["Observation", "include"]) == n >= 2
    # _count=1 pages: one Observation a page, every Observation once, by following the next links.
    assert [len(p) for p in seen["pages"]] == [1] * n
    assert len({i for p in seen["pages"] for i in p}) == n
    assert seen["read"] == {"id": rid, "status": "final", "versionId": "1"}
    assert seen["vread"] == {"id": rid, "versionId": "1"}
    assert seen["history"] == {"type": "history", "total": 1, "entries": 1}
    assert seen["typeHistory"]["type"] == "history" and seen["typeHistory"]["entries"] >= 1
    assert seen["outOfScope"] == 403  # the token was granted DiagnosticReport and Observation only
