"""Every access decision of ``/dicomweb`` and ``/ui`` in one place.

Until the shared ``gateway.auth`` package lands, the rules are:

- an API client presents the gateway's bearer token (the same one ``/fhir`` checks);
- a browser opening a link embedded in HTML (an ``<img>``) presents a *signed URL*: ``exp`` (Unix seconds),
  ``client`` (who it was issued to) and ``sig`` = HMAC-SHA256 over ``path \\n exp \\n client`` with a key
  derived from the token. A missing, expired, altered or other-path signature is refused;
- a review-page user is allowed an action by role: ``reader`` reviews, ``administrator`` also retries jobs.

Swapping these for SMART scopes means changing this module only.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

ROLES = ("reader", "administrator")
_ROLE_ALLOWS = {
    "reader": {"review"},
    "administrator": {"review", "retry", "admin"},
}


@dataclass(frozen=True)
class Principal:
    """Who made a request: ``kind`` is ``token``, ``signed`` or ``user``."""

    kind: str
    name: str


class Access:
    """``authenticator`` (:func:`gateway.auth.authenticator`), when given, decides bearer tokens as ``/fhir``
    does: the static token, SMART backend-services tokens and OIDC tokens, each with read access to
    ImagingStudy; without it only the static token is accepted."""

    def __init__(self, token: str, *, signed_url_lifetime: int, authenticator: Any | None = None) -> None:
        self._token = token.encode("utf-8")
        self._key = hmac.new(self._token, b"gateway signed links v1", hashlib.sha256).digest()
        self.lifetime = signed_url_lifetime
        self._auth = authenticator

    # -- bearer token ----------------------------------------------------------------------------------------
    def bearer(self, header: str | None) -> Principal | None:
        scheme, _, given = (header or "").partition(" ")
        # An empty configured token admits no one rather than everyone.
        if scheme.lower() != "bearer":
            return None
        if self._auth is not None:
            from gateway.auth import AuthError

            try:
                principal = self._auth.authenticate(header)
                self._auth.require(principal, "ImagingStudy", "read")
            except AuthError:
                return None
            return Principal("token", str(principal.client_id))
        if not self._token or not hmac.compare_digest(given.strip().encode("utf-8"), self._token):
            return None
        return Principal("token", "api")

    # -- signed links ----------------------------------------------------------------------------------------
    def _signature(self, path: str, exp: int, client: str) -> str:
        msg = f"{path}\n{exp}\n{client}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def sign(self, path: str, client: str, *, now: float | None = None, extra: str = "") -> str:
        """``path`` with ``exp``, ``client`` and ``sig`` appended; ``extra`` is an already-encoded query."""
        exp = int((time.time() if now is None else now) + self.lifetime)
        query = urlencode({"exp": exp, "client": client, "sig": self._signature(path, exp, client)})
        return f"{path}?{extra + '&' if extra else ''}{query}"

    def signed(self, path: str, params: dict[str, str], *, now: float | None = None) -> Principal | None:
        exp_raw, client, sig = params.get("exp", ""), params.get("client", ""), params.get("sig", "")
        if not exp_raw.isdigit() or not client or not sig:
            return None
        exp = int(exp_raw)
        if exp < (time.time() if now is None else now):
            return None
        if not hmac.compare_digest(sig.encode(), self._signature(path, exp, client).encode()):
            return None
        return Principal("signed", client)

    def request(self, path: str, header: str | None, params: dict[str, str]) -> Principal | None:
        """The principal of a ``/dicomweb`` request, or None (→ 401)."""
        return self.bearer(header) or self.signed(path, params)

    # -- review-page roles -----------------------------------------------------------------------------------
    @staticmethod
    def may(role: str, action: str) -> bool:
        return action in _ROLE_ALLOWS.get(role, set())
