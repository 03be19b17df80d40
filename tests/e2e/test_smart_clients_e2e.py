"""Three independent FHIR clients, against a real ``gateway serve`` that received the sample study from
DCMTK's storescu, each authenticated with a SMART Backend Services token obtained with a private key:
fhirpy (search with ``_include``, ``count()``, paging, read, vread, history), SMART's ``fhirclient``
(the same, parsed strictly as R4 4.0.1) and fhir-kit-client on Node (``tests/node/fhir_kit_client.mjs``,
which signs its own client assertion with RS384 and with ES384).

``tests/auth/test_clients_with_smart.py`` runs the same clients against the FHIR routes alone, over a seeded
index; this test shows the whole service (SCP, pipeline, HTTP) answering them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from fhirpy import SyncFHIRClient
from harness import TOKEN, Served, serve_sample
from smart_client import CLIENT_ID, client_keys, run_fhir_kit_client, smart_token


@pytest.fixture(scope="module")
def smart_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if shutil.which("storescu") is None:
        pytest.fail("DCMTK storescu is not installed (scripts/system-deps.sh installs it)")
    root = tmp_path_factory.mktemp("smart")
    keys = client_keys(root)
    # The EMR is registered with its public keys only, as an operator would in the settings.
    env = {"GATEWAY_AUTH__CLIENTS": json.dumps([{"client_id": CLIENT_ID, "jwks": keys.jwks}])}
    with serve_sample(root, env) as served:
        served.storescu(*sorted(served.sample_dir.glob("*.dcm")))
        served.wait_state({"done", "failed"}, timeout=240)
        assert served.study()["state"] == "done", served.log.read_text()[-4000:]
        yield {"served": served, "keys": keys}


def _report(client: SyncFHIRClient, served: Served) -> dict[str, Any]:
    study_uid = served.manifest["study_instance_uid"]
    [imaging] = (
        client.resources("ImagingStudy").search(identifier=f"urn:dicom:uid|urn:oid:{study_uid}").fetch_all()
    )
    reports = client.resources("DiagnosticReport").search(subject=imaging["subject"]["reference"]).fetch_all()
    [report] = [r for r in reports if r["status"] == "final" and r.get("result")]
    return dict(report)


@pytest.mark.slow
def test_fhirpy_and_fhirclient_against_gateway_serve(smart_served: dict[str, Any]) -> None:
    from fhirclient.models.diagnosticreport import DiagnosticReport
    from fhirclient.models.observation import Observation
    from fhirclient.server import FHIRServer

    served: Served = smart_served["served"]
    base = f"{served.base}/fhir"
    token = smart_token(served.base, smart_served["keys"], "system/*.rs")
    client = SyncFHIRClient(base, authorization=f"Bearer {token}")
    report = _report(client, served)
    rid, pid = report["id"], report["subject"]["reference"].split("/", 1)[1]
    results = {r["reference"] for r in report["result"]}

    # fhirpy: _include, count(), paging by the next links, read, vread, history
    bundle = (
        client.resources("DiagnosticReport").search(_id=rid).include("DiagnosticReport", "result").fetch_raw()
    )
    included = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"][1:]}
    assert bundle["entry"][0]["resource"]["id"] == rid and included == results
    observations = client.resources("Observation").search(patient=pid)
    n = observations.count()
    assert n >= len(results) >= 2
    paged = observations.limit(1).fetch_all()
    assert len(paged) == n and len({o["id"] for o in paged}) == n
    assert client.reference("DiagnosticReport", rid).to_resource()["id"] == rid
    version = report["meta"]["versionId"]
    vread = client.execute(f"DiagnosticReport/{rid}/_history/{version}", method="get")
    assert vread["meta"]["versionId"] == version
    history = client.execute(f"DiagnosticReport/{rid}/_history", method="get")
    assert history["type"] == "history" and history["total"] == int(version)
    with pytest.raises(Exception, match=r"401|login|bearer"):
        SyncFHIRClient(base).resources("DiagnosticReport").count()

    # SMART's fhirclient parses every answer strictly as R4 4.0.1
    server = FHIRServer(None, base_uri=base + "/")
    server.session.headers["Authorization"] = f"Bearer {token}"
    read = DiagnosticReport.read(rid, server)
    assert read.id == rid and read.status == "final"
    assert (
        DiagnosticReport.read_from(f"DiagnosticReport/{rid}/_history/{version}", server).meta.versionId
        == version
    )
    found = DiagnosticReport.where({"_id": rid, "_include": "DiagnosticReport:result"}).perform(server)
    kinds = [type(e.resource).__name__ for e in found.entry]
    assert kinds.count("DiagnosticReport") == 1 and kinds.count("Observation") == len(results)
    assert len(list(Observation.where({"patient": pid, "_count": "1"}).perform_resources_iter(server))) == n


@pytest.mark.slow
@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_fhir_kit_client_against_gateway_serve(smart_served: dict[str, Any], alg: str) -> None:
    served: Served = smart_served["served"]
    admin = SyncFHIRClient(f"{served.base}/fhir", authorization=f"Bearer {TOKEN}")
    report = _report(admin, served)
    rid, pid = report["id"], report["subject"]["reference"].split("/", 1)[1]
    n = admin.resources("Observation").search(patient=pid).count()
    seen = run_fhir_kit_client(f"{served.base}/fhir", smart_served["keys"], alg, pid, rid)
    reports = admin.resources("DiagnosticReport").search(patient=pid).fetch_all()
    assert seen["include"].count(["DiagnosticReport", "match"]) == len(reports) >= 1
    assert seen["include"].count(["Observation", "include"]) == len(
        {r["reference"] for d in reports for r in d.get("result", [])}
    )
    assert [len(p) for p in seen["pages"]] == [1] * n  # _count=1, every Observation once, by next links
    assert len({i for p in seen["pages"] for i in p}) == n
    version = report["meta"]["versionId"]
    assert seen["read"] == {"id": rid, "status": "final", "versionId": version}
    assert seen["vread"] == {"id": rid, "versionId": "1"}
    assert seen["history"]["type"] == "history" and seen["history"]["total"] == int(version)
