"""SMART Backend Services end to end through the FHIR routes: RS384 and ES384 client assertions signed
with real private keys (cryptography + PyJWT), scopes enforced per request, replay and bad assertions
refused, short-lived tokens, discovery; access tokens of a site's OpenID Connect server (JWKS over HTTP)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.auth.core import Principal
from gateway.fhir.api import build_fhir_routes
from gateway.settings import Settings

TOKEN_URL = "http://testserver/auth/token"
STATIC = "static-secret"


def _jwk(private: Any, kid: str, alg: str) -> dict[str, Any]:
    algo = jwt.algorithms.RSAAlgorithm if alg.startswith("RS") else jwt.algorithms.ECAlgorithm
    key = json.loads(algo.to_jwk(private.public_key()))
    return {**key, "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP384R1()),
        "other": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


def _assertion(private: Any, client_id: str, alg: str, kid: str, **over: Any) -> str:
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": int(time.time()) + 240,
        "jti": str(uuid.uuid4()),
    }
    claims.update(over)
    return jwt.encode(claims, private, algorithm=alg, headers={"kid": kid})


def _token_request(client: TestClient, assertion: str, scope: str = "system/*.rs") -> Any:
    return client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "scope": scope,
        },
    )


@pytest.fixture
def app(published: dict[str, Any], tmp_path: Path, keys: dict[str, Any]) -> TestClient:
    jwks_file = tmp_path / "ec-client.jwks.json"
    jwks_file.write_text(json.dumps({"keys": [_jwk(keys["ec"], "ec-1", "ES384")]}))
    settings = Settings.load(
        None,
        data_dir=tmp_path / "data",
        fhir={"audit_token": "auditor-secret"},
        auth={
            "clients": [
                {"client_id": "emr-rsa", "jwks": {"keys": [_jwk(keys["rsa"], "rsa-1", "RS384")]}},
                {
                    "client_id": "emr-ec",
                    "jwks_file": str(jwks_file),
                    "scopes": ["system/DiagnosticReport.rs"],
                },
            ]
        },
    )
    return TestClient(Starlette(routes=build_fhir_routes(published["sessions"], settings, STATIC)))


def _rid(published: dict[str, Any], rtype: str) -> str:
    return next(r["id"] for r in published["resources"] if r["resourceType"] == rtype)


def test_rs384_client_gets_a_short_lived_token_and_reads(
    app: TestClient, keys: dict[str, Any], published: dict[str, Any]
) -> None:
    res = _token_request(app, _assertion(keys["rsa"], "emr-rsa", "RS384", "rsa-1"))
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["token_type"] == "bearer" and 0 < body["expires_in"] <= 300 and body["scope"] == "system/*.rs"
    assert res.headers["cache-control"] == "no-store"
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    assert (
        app.get(f"/fhir/DiagnosticReport/{_rid(published, 'DiagnosticReport')}", headers=auth).status_code
        == 200
    )
    assert app.get("/fhir/Patient?identifier=PAT-42", headers=auth).status_code == 200
    assert app.get("/fhir/AuditEvent", headers=auth).status_code == 403  # the wildcard never covers the trail
    # The audit trail names the SMART client.
    trail = app.get(
        "/fhir/AuditEvent?agent=emr-rsa", headers={"Authorization": "Bearer auditor-secret"}
    ).json()
    assert len(trail["entry"]) == 3


def test_es384_client_is_limited_to_its_scopes(
    app: TestClient, keys: dict[str, Any], published: dict[str, Any]
) -> None:
    asked = "system/DiagnosticReport.rs system/Patient.rs"
    res = _token_request(app, _assertion(keys["ec"], "emr-ec", "ES384", "ec-1"), asked)
    assert res.status_code == 200, res.text
    assert res.json()["scope"] == "system/DiagnosticReport.rs"
    auth = {"Authorization": f"Bearer {res.json()['access_token']}"}
    assert app.get("/fhir/DiagnosticReport", headers=auth).status_code == 200
    denied = app.get(f"/fhir/Patient/{_rid(published, 'Patient')}", headers=auth)
    assert denied.status_code == 403 and denied.json()["resourceType"] == "OperationOutcome"
    only_patient = _token_request(app, _assertion(keys["ec"], "emr-ec", "ES384", "ec-1"), "system/Patient.rs")
    assert only_patient.status_code == 400 and only_patient.json()["error"] == "invalid_scope"


def test_bad_assertions_are_refused(app: TestClient, keys: dict[str, Any]) -> None:
    replay = _assertion(keys["rsa"], "emr-rsa", "RS384", "rsa-1")
    assert _token_request(app, replay).status_code == 200
    cases = {
        "replayed jti": replay,
        "RS256": _assertion(keys["rsa"], "emr-rsa", "RS256", "rsa-1"),
        "wrong key": _assertion(keys["other"], "emr-rsa", "RS384", "rsa-1"),
        "unknown client": _assertion(keys["rsa"], "nobody", "RS384", "rsa-1"),
        "wrong audience": _assertion(keys["rsa"], "emr-rsa", "RS384", "rsa-1", aud="https://elsewhere/token"),
        "expired": _assertion(keys["rsa"], "emr-rsa", "RS384", "rsa-1", exp=int(time.time()) - 120),
        "exp too far": _assertion(keys["rsa"], "emr-rsa", "RS384", "rsa-1", exp=int(time.time()) + 3600),
        "sub differs": _assertion(keys["rsa"], "emr-rsa", "RS384", "rsa-1", sub="other"),
        "not a JWT": "not-a-jwt",
    }
    for name, assertion in cases.items():
        res = _token_request(app, assertion)
        assert res.status_code == 401 and res.json()["error"] == "invalid_client", name
    wrong_grant = app.post("/auth/token", data={"grant_type": "password"})
    assert wrong_grant.status_code == 400 and wrong_grant.json()["error"] == "unsupported_grant_type"


def test_tokens_expire(app: TestClient, keys: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    token = _token_request(app, _assertion(keys["rsa"], "emr-rsa", "RS384", "rsa-1")).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert app.get("/fhir/DiagnosticReport", headers=auth).status_code == 200
    from gateway.auth import core

    later = time.time() + 301
    monkeypatch.setattr(core.time, "time", lambda: later)
    assert app.get("/fhir/DiagnosticReport", headers=auth).status_code == 401


def test_discovery_and_static_token(app: TestClient) -> None:
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        conf = app.get(path).json()
        assert conf["token_endpoint"] == TOKEN_URL
        assert conf["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
        assert "client-confidential-asymmetric" in conf["capabilities"]
    assert app.get("/fhir/DiagnosticReport", headers={"Authorization": f"bearer {STATIC}"}).status_code == 200


def test_scope_grammar() -> None:
    v1 = Principal("c", frozenset({"system/*.read"}), "smart")
    assert v1.allows("Observation", "search") and not v1.allows("AuditEvent", "read")
    v2 = Principal("c", frozenset({"system/Observation.r"}), "smart")
    assert v2.allows("Observation", "read") and not v2.allows("Observation", "search")
    admin = Principal("a", frozenset({"system/AuditEvent.rs"}), "smart")
    assert admin.allows("AuditEvent", "search") and not admin.allows("Patient", "read")
    assert not Principal("c", frozenset({"patient/*.rs", "openid"}), "smart").allows("Observation", "read")


class _Jwks(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def test_oidc_issuer_tokens(published: dict[str, Any], tmp_path: Path, keys: dict[str, Any]) -> None:
    handler = type(
        "Handler", (_Jwks,), {"body": json.dumps({"keys": [_jwk(keys["other"], "idp-1", "RS256")]}).encode()}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks"
        settings = Settings.load(
            None,
            data_dir=tmp_path / "data",
            auth={"oidc": [{"issuer": "https://idp.example.org", "jwks_url": url, "audience": "gateway"}]},
        )
        app = TestClient(Starlette(routes=build_fhir_routes(published["sessions"], settings, STATIC)))

        def token(**over: Any) -> dict[str, str]:
            claims = {
                "iss": "https://idp.example.org",
                "aud": "gateway",
                "exp": int(time.time()) + 120,
                "client_id": "ris",
                "scope": "system/DiagnosticReport.rs",
            }
            claims.update(over)
            signed = jwt.encode(claims, keys["other"], algorithm="RS256", headers={"kid": "idp-1"})
            return {"Authorization": f"Bearer {signed}"}

        assert app.get("/fhir/DiagnosticReport", headers=token()).status_code == 200
        assert app.get("/fhir/Patient", headers=token()).status_code == 403
        assert app.get("/fhir/DiagnosticReport", headers=token(aud="other")).status_code == 401
        assert app.get("/fhir/DiagnosticReport", headers=token(iss="https://evil.example")).status_code == 401
        assert app.get("/fhir/DiagnosticReport", headers=token(exp=int(time.time()) - 60)).status_code == 401
        forged = jwt.encode(
            {
                "iss": "https://idp.example.org",
                "aud": "gateway",
                "exp": int(time.time()) + 60,
                "scope": "system/*.rs",
            },
            keys["rsa"],
            algorithm="RS256",
            headers={"kid": "idp-1"},
        )
        assert (
            app.get("/fhir/DiagnosticReport", headers={"Authorization": f"Bearer {forged}"}).status_code
            == 401
        )
    finally:
        server.shutdown()
        server.server_close()
