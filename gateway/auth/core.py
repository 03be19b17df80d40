"""Who is calling, and may they do this: one authenticator for ``/fhir``, ``/images`` (and ``/dicomweb``,
``/ui``).

Three kinds of bearer token are accepted (RFC 6750; the scheme is case-insensitive):

- the site's static API token (full clinical read, ``system/*.rs``), and the auditors' static token
  (``system/AuditEvent.rs``); an empty configured token admits nobody;
- access tokens this gateway issued at ``POST /auth/token`` to a SMART Backend Services client
  (``client_credentials`` with a ``private_key_jwt`` assertion signed RS384 or ES384, checked with PyJWT
  against the client's registered JWKS), opaque and short-lived (≤ 5 minutes), held in memory;
- JWT access tokens of a configured OpenID Connect issuer (signature from its JWKS URL, ``iss``, ``exp``,
  optional ``aud``; scopes from ``scope``/``scp``).

Scopes are SMART v2 (``system/DiagnosticReport.rs``, ``system/*.rs``) or v1 (``system/*.read``). The
wildcard never covers AuditEvent: reading the audit trail needs ``system/AuditEvent.rs`` by name.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from starlette.requests import Request

from gateway.auth.bearer import bearer_credentials
from gateway.auth.settings import AuthSettings, SmartClient

Interaction = Literal["read", "search", "create", "update", "delete"]
#: SMART v2 permission letter of each interaction; v1 ``read`` covers r and s, v1 ``write`` covers c, u, d.
_LETTER: dict[str, str] = {"read": "r", "search": "s", "create": "c", "update": "u", "delete": "d"}
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ["RS384", "ES384"]
OIDC_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]
ADMIN_ONLY = frozenset({"AuditEvent"})
STATIC_CLIENT = "static-api-token"
AUDITOR = "auditor"


class AuthError(Exception):
    """401 (not authenticated) or 403 (not allowed); routes turn it into their own error body."""

    def __init__(self, status: Literal[401, 403], message: str) -> None:
        super().__init__(message)
        self.status = status


class TokenError(Exception):
    """An OAuth token-endpoint error (RFC 6749 5.2)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.status = error, status


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: client id, granted scopes, and how it authenticated."""

    client_id: str
    scopes: frozenset[str]
    kind: Literal["static", "smart", "oidc"]

    def allows(self, resource_type: str, interaction: Interaction) -> bool:
        want = _LETTER[interaction]
        for scope in self.scopes:
            context, _, rest = scope.partition("/")
            rtype, _, perms = rest.partition(".")
            if context not in ("system", "user") or not rtype or not perms:
                continue
            if rtype == "*" and resource_type in ADMIN_ONLY:
                continue
            if rtype not in ("*", resource_type):
                continue
            letters = perms.split("?")[0]
            if want in _V1.get(letters, "") or (
                letters.isalpha() and want in letters and set(letters) <= set("cruds")
            ):
                return True
        return False


def _covered(requested: str, allowed: set[str]) -> bool:
    probe = Principal("", frozenset(allowed), "smart")
    context, _, rest = requested.partition("/")
    rtype, _, perms = rest.partition(".")
    if context != "system" or not rtype or not perms:
        return False
    if requested in allowed:
        return True
    letters = "rs" if perms in ("read", "*") else perms
    if rtype == "*":
        return any(a.startswith("system/*.") for a in allowed) and all(ch in "rs" for ch in letters)
    return all(ch in "rs" for ch in letters) and all(
        probe.allows(rtype, "read" if ch == "r" else "search") for ch in letters
    )


class Authenticator:
    """Checks bearer tokens and issues SMART backend-services access tokens."""

    def __init__(self, settings: AuthSettings, static_token: str, audit_token: str = "") -> None:
        self.settings = settings
        self._static = static_token
        self._audit = audit_token
        self._clients = {c.client_id: c for c in settings.clients}
        self._issued: dict[str, tuple[Principal, float]] = {}
        self._seen_jti: dict[str, float] = {}
        self._lock = threading.Lock()
        self._jwks_clients: dict[str, jwt.PyJWKClient] = {}

    # -- checking a request -------------------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header, or :class:`AuthError` 401."""
        given = bearer_credentials(authorization)
        if given is None:
            raise AuthError(401, "a bearer token is required")
        if self._static and hmac.compare_digest(given.encode(), self._static.encode()):
            # The operator's API token: read everything, and manage Subscriptions (as before scopes existed).
            return Principal(STATIC_CLIENT, frozenset({"system/*.rs", "system/Subscription.cud"}), "static")
        if self._audit and hmac.compare_digest(given.encode(), self._audit.encode()):
            return Principal(AUDITOR, frozenset({"system/AuditEvent.rs"}), "static")
        now = time.time()
        with self._lock:
            issued = self._issued.get(given)
            if issued is not None and issued[1] <= now:
                del self._issued[given]
                issued = None
        if issued is not None:
            return issued[0]
        if given.count(".") == 2 and self.settings.oidc:
            return self._oidc(given)
        raise AuthError(401, "the bearer token is not valid (unknown or expired)")

    def require(self, principal: Principal, resource_type: str, interaction: Interaction) -> None:
        if not principal.allows(resource_type, interaction):
            raise AuthError(403, f"scope does not allow {interaction} of {resource_type}")

    def principal_for(self, request: Request, resource_type: str, interaction: Interaction) -> Principal:
        """The one call a route needs: authenticate the request and check its scope (AuthError 401/403)."""
        principal = self.authenticate(request.headers.get("authorization"))
        self.require(principal, resource_type, interaction)
        return principal

    def _oidc(self, token: str) -> Principal:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthError(401, "the bearer token is not a valid JWT") from exc
        issuer = next((i for i in self.settings.oidc if i.issuer == unverified.get("iss")), None)
        if issuer is None:
            raise AuthError(401, "the token's issuer is not trusted here")
        try:
            key = self._jwks_client(issuer.jwks_url).get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=OIDC_ALGORITHMS,
                issuer=issuer.issuer,
                audience=issuer.audience,
                options={"require": ["exp", "iss"], "verify_aud": issuer.audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(401, f"the issuer's token does not verify: {type(exc).__name__}") from exc
        raw = claims.get("scope") or claims.get("scp") or []
        scopes = frozenset(raw.split() if isinstance(raw, str) else [str(x) for x in raw])
        client = str(claims.get("client_id") or claims.get("azp") or claims.get("sub") or "oidc")
        return Principal(client[:128], scopes, "oidc")

    # -- issuing tokens (SMART Backend Services) ----------------------------------------------------------

    def _jwks_client(self, url: str) -> jwt.PyJWKClient:
        if url not in self._jwks_clients:
            self._jwks_clients[url] = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=10)
        return self._jwks_clients[url]

    def _client_key(self, client: SmartClient, assertion: str) -> Any:
        if client.jwks_url:
            return self._jwks_client(client.jwks_url).get_signing_key_from_jwt(assertion).key
        import json

        data = client.jwks if client.jwks is not None else json.loads(client.jwks_file.read_text())  # type: ignore[union-attr]
        keyset = jwt.PyJWKSet.from_dict(data)
        kid = jwt.get_unverified_header(assertion).get("kid")
        keys = [k for k in keyset.keys if kid is None or k.key_id == kid]
        if not keys:
            raise TokenError("invalid_client", "no registered key matches the assertion's kid", 401)
        return keys[0].key

    def issue(self, form: dict[str, str], token_urls: list[str]) -> dict[str, Any]:
        """The token endpoint's answer to a ``client_credentials`` request (RFC 6749 4.4, RFC 7523)."""
        if form.get("grant_type") != "client_credentials":
            raise TokenError("unsupported_grant_type", "only client_credentials is supported")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise TokenError("invalid_request", f"a client_assertion of type {ASSERTION_TYPE} is required")
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenError("invalid_client", "the client assertion is not a JWT", 401) from exc
        if header.get("alg") not in ASSERTION_ALGORITHMS:
            raise TokenError("invalid_client", "the assertion must be signed RS384 or ES384", 401)
        client = self._clients.get(str(unverified.get("iss")))
        if client is None:
            raise TokenError("invalid_client", "unknown client", 401)
        try:
            claims = jwt.decode(
                assertion,
                self._client_key(client, assertion),
                algorithms=ASSERTION_ALGORITHMS,
                audience=token_urls,
                issuer=client.client_id,
                options={"require": ["exp", "iss", "sub", "aud", "jti"]},
                leeway=30,
            )
        except (jwt.PyJWTError, ValueError, OSError) as exc:
            raise TokenError(
                "invalid_client", f"the client assertion does not verify: {type(exc).__name__}", 401
            ) from exc
        now = time.time()
        if claims["sub"] != client.client_id or float(claims["exp"]) > now + 330:
            raise TokenError("invalid_client", "sub must equal iss, and exp be at most 5 minutes ahead", 401)
        with self._lock:
            self._seen_jti = {j: e for j, e in self._seen_jti.items() if e > now}
            key = f"{client.client_id}\x1f{claims['jti']}"
            if key in self._seen_jti:
                raise TokenError("invalid_client", "the assertion's jti was used already", 401)
            self._seen_jti[key] = float(claims["exp"]) + 30
        requested = form.get("scope", "").split()
        allowed = set(client.scopes)
        granted = [s for s in requested if _covered(s, allowed)]
        if not granted:
            raise TokenError("invalid_scope", "none of the requested scopes is allowed for this client")
        lifetime = self.settings.token_lifetime
        token = secrets.token_urlsafe(32)
        principal = Principal(client.client_id, frozenset(granted), "smart")
        with self._lock:
            self._issued = {t: v for t, v in self._issued.items() if v[1] > now}
            self._issued[token] = (principal, now + lifetime)
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": lifetime,
            "scope": " ".join(granted),
        }


def smart_configuration(base_url: str) -> dict[str, Any]:
    """``/.well-known/smart-configuration`` (SMART App Launch 2.x) for backend services."""
    root = base_url.rstrip("/")
    return {
        "issuer": root,
        "token_endpoint": f"{root}/auth/token",
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["system/*.rs", "system/*.read", "system/AuditEvent.rs"],
        "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"],
    }
