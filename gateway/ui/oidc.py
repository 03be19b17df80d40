"""Sign-in through the site's OpenID Connect server: authorization code flow with PKCE (RFC 7636, S256).

OpenID Connect Core 1.0 §3.1: the browser is sent to the server's authorization endpoint with ``state``,
``nonce`` and a code challenge; the server sends it back with a code, which the gateway exchanges (with the
verifier) at the token endpoint. The ID token is checked with PyJWT against the server's JWKS: signature,
``iss``, ``aud`` (the client id), ``exp`` and ``nonce``. The discovery document and keys are the network edge;
everything else here is a pure function.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from gateway.ui.settings import OidcLogin

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256"]
_DISCOVERY_TTL = 300.0


class OidcError(Exception):
    """The sign-in failed: the server, the token or the state did not check out (the message says why)."""


@dataclass(frozen=True)
class Pending:
    """What the gateway keeps (in an HttpOnly cookie) between sending the browser out and its return."""

    state: str
    nonce: str
    verifier: str

    def encode(self) -> str:
        return f"{self.state}.{self.nonce}.{self.verifier}"

    @classmethod
    def decode(cls, value: str | None) -> Pending | None:
        parts = (value or "").split(".")
        return cls(*parts) if len(parts) == 3 and all(parts) else None

    @classmethod
    def new(cls) -> Pending:
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48))


def challenge(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(endpoint: str, settings: OidcLogin, redirect_uri: str, pending: Pending) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": settings.scopes,
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": challenge(pending.verifier),
            "code_challenge_method": "S256",
        }
    )
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


class OidcClient:
    """The gateway as a relying party of one issuer; discovery and keys are cached."""

    def __init__(self, settings: OidcLogin, *, timeout: float = 10.0) -> None:
        self.settings = settings
        self._timeout = timeout
        self._config: tuple[float, dict[str, Any]] | None = None
        self._jwks: jwt.PyJWKClient | None = None

    def configuration(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._config is None or now - self._config[0] > _DISCOVERY_TTL:
            url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            try:
                response = httpx.get(url, timeout=self._timeout)
                response.raise_for_status()
                config = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise OidcError(
                    f"the OpenID Connect server's discovery document: {type(exc).__name__}"
                ) from exc
            if config.get("issuer") != self.settings.issuer:
                raise OidcError("the discovery document names another issuer")
            self._config = (now, config)
        return self._config[1]

    def redirect(self, redirect_uri: str, pending: Pending) -> str:
        return authorization_url(
            self.configuration()["authorization_endpoint"], self.settings, redirect_uri, pending
        )

    def sign_in(self, code: str, redirect_uri: str, pending: Pending) -> dict[str, Any]:
        """Exchange the code and return the verified ID token's claims."""
        config = self.configuration()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.settings.client_id,
            "code_verifier": pending.verifier,
        }
        if self.settings.client_secret is not None:
            form["client_secret"] = self.settings.client_secret.get_secret_value()
        try:
            response = httpx.post(config["token_endpoint"], data=form, timeout=self._timeout)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"the token endpoint: {type(exc).__name__}") from exc
        if response.status_code != 200 or not isinstance(body, dict) or "id_token" not in body:
            raise OidcError(f"the token endpoint refused the code: {str(body.get('error', ''))[:64]}")
        return self.verify(str(body["id_token"]), pending.nonce)

    def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        if self._jwks is None:
            self._jwks = jwt.PyJWKClient(self.configuration()["jwks_uri"], cache_keys=True, timeout=10)
        try:
            key = self._jwks.get_signing_key_from_jwt(id_token)
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.settings.client_id,
                issuer=self.settings.issuer,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise OidcError(f"the ID token does not verify: {type(exc).__name__}") from exc
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise OidcError("the ID token's nonce is not the one sent")
        return claims
