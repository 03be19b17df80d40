"""R4 Subscriptions (Backport IG 1.1): created over the API, notified from the outbox to a rest-hook endpoint,
each notification checked with the official FHIR R4 JSON schema."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fhir_receiver import schema_errors
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from test_stage_align import put_read_report, seed

from gateway.delivery import build_senders
from gateway.delivery.subscriptions import (
    FILTER,
    HEARTBEAT,
    PAYLOAD,
    TOPIC,
    build_subscription_routes,
    queue_heartbeats,
)
from gateway.delivery.worker import DeliveryWorker
from gateway.fhir.api import build_fhir_routes
from gateway.index.models import Outbox, Subscription, utcnow
from gateway.pipeline.stage import StageContext
from gateway.pipeline.stages import align as align_stage
from gateway.pipeline.stages import publish as publish_stage
from gateway.settings import Settings

TOKEN = "sub-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Endpoint:
    """A rest-hook endpoint (uvicorn) recording what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, Any], dict[str, str]]] = []

        async def hook(request: Request) -> Response:
            self.received.append((await request.json(), dict(request.headers)))
            return Response(status_code=200)

        config = uvicorn.Config(
            Starlette(routes=[Route("/hook", hook, methods=["POST"])]),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}/hook"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.stop()


def _subscription(
    endpoint: str,
    payload: str = "id-only",
    filters: list[str] = (),
    heartbeat: int | None = None,  # type: ignore[assignment]
) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": endpoint,
        "payload": "application/fhir+json",
        "_payload": {"extension": [{"url": PAYLOAD, "valueCode": payload}]},
        "header": ["X-Hook-Secret: s3cret"],
    }
    if heartbeat:
        channel["extension"] = [{"url": HEARTBEAT, "valueUnsignedInt": heartbeat}]
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "reports for the EMR",
        "criteria": TOPIC,
        "_criteria": {"extension": [{"url": FILTER, "valueString": f} for f in filters]},
        "channel": channel,
    }


def _client(sessions: sessionmaker[Session], settings: Settings) -> TestClient:
    routes = [
        *build_subscription_routes(sessions, "http://gw/fhir", TOKEN, settings),
        *build_fhir_routes(sessions, settings, TOKEN),
    ]
    return TestClient(Starlette(routes=routes))


def test_create_validate_status_delete(sessions: sessionmaker[Session], settings: Settings) -> None:
    client = _client(sessions, settings)
    assert client.post("/fhir/Subscription", json=_subscription("http://x/hook")).status_code == 401
    bad = _subscription("http://x/hook", filters=["DiagnosticReport?code=1"])
    answer = client.post("/fhir/Subscription", json=bad, headers=AUTH)
    assert answer.status_code == 400 and "unsupported filter" in answer.json()["issue"][0]["diagnostics"]
    wrong = {**_subscription("http://x/hook"), "criteria": "Observation?"}
    assert client.post("/fhir/Subscription", json=wrong, headers=AUTH).status_code == 400
    made = client.post(
        "/fhir/Subscription",
        json=_subscription("http://x/hook", filters=["DiagnosticReport?patient=Patient/p1"]),
        headers=AUTH,
    )
    assert made.status_code == 201 and made.json()["status"] == "active"
    sid = made.json()["id"]
    status = client.get(f"/fhir/Subscription/{sid}/$status", headers=AUTH).json()
    params = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
    assert params["type"]["valueCode"] == "query-status" and params["status"]["valueCode"] == "active"
    assert schema_errors(status) == []
    assert client.get(f"/fhir/Subscription/{sid}", headers=AUTH).json()["id"] == sid
    assert client.delete(f"/fhir/Subscription/{sid}", headers=AUTH).status_code == 204
    assert client.get(f"/fhir/Subscription/{sid}", headers=AUTH).json()["status"] == "off"


def _drain(worker: DeliveryWorker, sessions: sessionmaker[Session]) -> list[Outbox]:
    for _ in range(300):
        worker.run_once()
        with sessions() as session:
            rows = list(session.scalars(select(Outbox).order_by(Outbox.id)))
        if all(r.state in ("sent", "dead") for r in rows):
            return rows
        time.sleep(0.02)
    raise AssertionError("not drained")


def test_publication_notifies_matching_subscriptions(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
    endpoint: Endpoint,
) -> None:
    settings = settings_factory()
    client = _client(sessions, settings)
    study = seed(sessions, tmp_path)
    put_read_report(settings, sessions, study, "右肺上叶见结节（Se 2 Im 5）。")
    ids = {}
    for name, sub in {
        "id-only": _subscription(
            endpoint.url, filters=["DiagnosticReport?category=http://loinc.org|LP29684-5"]
        ),
        "full": _subscription(endpoint.url, "full-resource"),
        "other-patient": _subscription(endpoint.url, filters=["DiagnosticReport?patient=Patient/nobody"]),
    }.items():
        ids[name] = client.post("/fhir/Subscription", json=sub, headers=AUTH).json()["id"]
    align_stage.run(StageContext(settings, sessions, 1, "align"), study)
    publish_stage.run(StageContext(settings, sessions, 1, "publish"), study)
    publish_stage.run(StageContext(settings, sessions, 1, "publish"), study)  # unchanged: no second event
    worker = DeliveryWorker(settings.delivery, sessions, build_senders(settings.delivery, sessions))
    rows = _drain(worker, sessions)
    worker.stop()
    assert all(r.state == "sent" for r in rows)
    by_sub: dict[str, list[dict[str, Any]]] = {}
    for bundle, headers in endpoint.received:
        assert headers["x-hook-secret"] == "s3cret"
        assert schema_errors(bundle) == [], schema_errors(bundle)[:3]
        params = {p["name"]: p for p in bundle["entry"][0]["resource"]["parameter"]}
        sid = params["subscription"]["valueReference"]["reference"].rsplit("/", 1)[-1]
        by_sub.setdefault(sid, []).append(bundle)
    kinds = {
        name: [
            next(p["valueCode"] for p in b["entry"][0]["resource"]["parameter"] if p["name"] == "type")
            for b in by_sub[sid]
        ]
        for name, sid in ids.items()
    }
    assert kinds == {
        "id-only": ["handshake", "event-notification"],
        "full": ["handshake", "event-notification"],
        "other-patient": ["handshake"],
    }
    id_only = by_sub[ids["id-only"]][1]["entry"][1]
    assert "resource" not in id_only and id_only["fullUrl"].startswith("http://127.0.0.1")
    full = by_sub[ids["full"]][1]["entry"][1]["resource"]
    assert full["resourceType"] == "DiagnosticReport" and full["status"] == "final"


def test_heartbeat(sessions: sessionmaker[Session], settings: Settings) -> None:
    client = _client(sessions, settings)
    sid = client.post(
        "/fhir/Subscription", json=_subscription("http://x/hook", heartbeat=5), headers=AUTH
    ).json()["id"]
    assert queue_heartbeats(sessions, "http://gw/fhir") == 0  # just created (handshake queued)
    with sessions.begin() as session:
        session.execute(update(Subscription).values(last_queued_at=utcnow().replace(year=2020)))
    assert queue_heartbeats(sessions, "http://gw/fhir") == 1
    with sessions() as session:
        kinds = [
            r.payload["type"]
            for r in session.scalars(select(Outbox).where(Outbox.destination == sid).order_by(Outbox.id))
        ]
    assert kinds == ["handshake", "heartbeat"]


def test_create_and_delete_need_a_write_scope(
    sessions: sessionmaker[Session], settings_factory: Callable[..., Settings]
) -> None:
    """SMART backend clients with real signed assertions: read scopes read, ``c``/``d`` (or v1 ``write``)
    create and delete."""
    import json
    import uuid

    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "k1", "alg": "RS384"}
    scopes = {
        "reader": "system/Subscription.rs",
        "creator": "system/Subscription.crs",
        "v1-writer": "system/Subscription.read system/Subscription.write",
    }
    settings = settings_factory(
        auth={
            "clients": [
                {"client_id": c, "jwks": {"keys": [jwk]}, "scopes": s.split()} for c, s in scopes.items()
            ]
        }
    )
    client = _client(sessions, settings)

    def bearer(client_id: str) -> dict[str, str]:
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": "http://testserver/auth/token",
            "exp": int(time.time()) + 240,
            "jti": str(uuid.uuid4()),
        }
        answer = client.post(
            "/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": jwt.encode(claims, key, algorithm="RS384", headers={"kid": "k1"}),
                "scope": scopes[client_id],
            },
        )
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    reader, creator, writer = bearer("reader"), bearer("creator"), bearer("v1-writer")
    refused = client.post("/fhir/Subscription", json=_subscription("http://x/hook"), headers=reader)
    assert refused.status_code == 403
    assert "create of Subscription" in refused.json()["issue"][0]["diagnostics"]
    made = client.post("/fhir/Subscription", json=_subscription("http://x/hook"), headers=creator)
    assert made.status_code == 201
    sid = made.json()["id"]
    assert client.get(f"/fhir/Subscription/{sid}", headers=reader).status_code == 200
    assert client.get(f"/fhir/Subscription/{sid}/$status", headers=reader).status_code == 200
    assert client.delete(f"/fhir/Subscription/{sid}", headers=reader).status_code == 403
    assert client.delete(f"/fhir/Subscription/{sid}", headers=creator).status_code == 403
    assert client.delete(f"/fhir/Subscription/{sid}", headers=writer).status_code == 204
    assert (
        client.post("/fhir/Subscription", json=_subscription("http://x/hook"), headers=writer).status_code
        == 201
    )
    # The operator's API token manages Subscriptions as before.
    assert (
        client.post("/fhir/Subscription", json=_subscription("http://x/hook"), headers=AUTH).status_code
        == 201
    )
