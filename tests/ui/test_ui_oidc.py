"""Sign-in to the review page through an OpenID Connect server (authorization code + PKCE), in Chromium.

No OpenID Connect provider that runs offline in-process is installed here, so the test runs a minimal one
(below, on a free port): discovery, an authorization endpoint that approves the configured user at once,
a token endpoint that checks the PKCE verifier (S256) and issues an RS256 ID token signed with PyJWT, and a
JWKS endpoint. The gateway is a real ``gateway serve`` configured with ``[ui.oidc]``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from harness import Served, find_free_port, serve_sample

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
CLIENT_ID = "gateway-review"


class Provider:
    """A minimal OpenID Connect provider: one signing key, codes kept in memory, one user at a time."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.port = find_free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.user = "reader1"
        self.codes: dict[str, dict[str, str]] = {}
        self.tamper_nonce = False
        self.token_requests: list[dict[str, str]] = []

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, body: Any, status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/.well-known/openid-configuration":
                    self._json(
                        {
                            "issuer": provider.issuer,
                            "authorization_endpoint": f"{provider.issuer}/authorize",
                            "token_endpoint": f"{provider.issuer}/token",
                            "jwks_uri": f"{provider.issuer}/jwks",
                            "response_types_supported": ["code"],
                            "code_challenge_methods_supported": ["S256"],
                        }
                    )
                elif url.path == "/jwks":
                    self._json(provider.jwks())
                elif url.path == "/authorize":
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID
                    assert q["code_challenge_method"] == "S256" and "openid" in q["scope"].split()
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = {**q, "user": provider.user}
                    self.send_response(302)
                    back = urlencode({"code": code, "state": q["state"]})
                    self.send_header("Location", f"{q['redirect_uri']}?{back}")
                    self.end_headers()
                else:
                    self._json({"error": "not_found"}, 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                provider.token_requests.append(form)
                grant = provider.codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                digest = hashlib.sha256(verifier.encode()).digest()
                computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                if (
                    grant is None
                    or computed != grant["code_challenge"]
                    or form.get("redirect_uri") != grant["redirect_uri"]
                ):
                    self._json({"error": "invalid_grant"}, 400)
                    return
                now = int(time.time())
                claims = {
                    "iss": provider.issuer,
                    "aud": CLIENT_ID,
                    "sub": f"sub-{grant['user']}",
                    "preferred_username": grant["user"],
                    "iat": now,
                    "exp": now + 300,
                    "nonce": "forged" if provider.tamper_nonce else grant["nonce"],
                }
                token = jwt.encode(claims, provider.key, algorithm="RS256", headers={"kid": "k1"})
                self._json({"access_token": "x", "token_type": "Bearer", "id_token": token})

        return Handler


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    p = Provider()
    server = ThreadingHTTPServer(("127.0.0.1", p.port), p.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield p
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def oidc_served(tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> Iterator[Served]:
    login = {"issuer": provider.issuer, "client_id": CLIENT_ID, "display_name": "Hospital SSO"}
    with serve_sample(tmp_path_factory.mktemp("oidc"), {"GATEWAY_UI__OIDC": json.dumps(login)}) as served:
        subprocess.run(
            [
                *(sys.executable, "-m", "gateway", "user", "add", "reader1"),
                *("--display-name", "Dr Reader One", "--password-stdin", "--data-dir", str(served.data_dir)),
            ],
            input="correct horse battery\n",
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        )
        yield served


def test_sign_in_through_the_sites_openid_connect_server(oidc_served: Served, provider: Provider) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (scripts/system-deps.sh installs it)")
    from playwright.sync_api import sync_playwright

    served = oidc_served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(locale="en-US")
            page.goto(f"{served.base}/ui/worklist")
            assert "/ui/login" in page.url
            page.click("#oidc-login")  # → the provider → back to the gateway's callback
            page.wait_for_url("**/ui/worklist")
            assert "Dr Reader One" in page.locator(".who").inner_text()
            [exchange] = provider.token_requests
            assert exchange["grant_type"] == "authorization_code" and len(exchange["code_verifier"]) >= 43

            # A user the provider knows but the gateway has no account for: refused.
            other = browser.new_page()
            provider.user = "stranger"
            other.goto(f"{served.base}/ui/login")
            other.click("#oidc-login")
            other.wait_for_url("**/ui/oidc/callback**")
            assert "no enabled account" in other.locator("main").inner_text()
            assert other.goto(f"{served.base}/ui/worklist").url.endswith("/ui/login?next=/ui/worklist")

            # An ID token whose nonce is not the one sent: refused.
            provider.user, provider.tamper_nonce = "reader1", True
            third = browser.new_page()
            third.goto(f"{served.base}/ui/login")
            third.click("#oidc-login")
            third.wait_for_url("**/ui/oidc/callback**")
            assert "/ui/worklist" not in third.url and third.locator(".error, main").count()
        finally:
            browser.close()
    # A callback without the browser's state cookie (a forged redirect) is refused.
    forged = httpx.get(f"{served.base}/ui/oidc/callback", params={"code": "x", "state": "y"})
    assert forged.status_code == 403

    from sqlalchemy import select

    from gateway.index.db import open_index
    from gateway.index.models import UiAuditEvent

    sessions = open_index(f"sqlite:///{served.data_dir / 'index.sqlite3'}")
    with sessions() as session:
        events = [(a.username, a.action, a.detail) for a in session.scalars(select(UiAuditEvent))]
    assert ("reader1", "login", {"via": "oidc"}) in events
    whys = [d.get("why", "") for u, a, d in events if a == "login-failed"]
    assert any("no enabled account" in w for w in whys)
    assert any("nonce" in w for w in whys)
    assert any(w == "state" for w in whys)
