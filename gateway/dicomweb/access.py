"""Every access decision of ``/dicomweb`` and ``/ui`` in one place.

Until the shared ``gateway.auth`` package lands, the rules are:

- an API client presents the gateway's bearer token (the same one ``/fhir`` checks);
- a browser opening a link embedded in HTML (an ``<img>``) presents a *signed URL*
  (:mod:`gateway.auth.links`: HMAC over path, expiry and client). A missing, expired, altered or other-path
  signature is refused;
- a review-page user is allowed an action by role: ``reader`` reviews, ``administrator`` also retries jobs.

Swapping these for SMART scopes means changing this module only.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from gateway.auth.links import LinkSigner

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
        self.links = LinkSigner(token, signed_url_lifetime)
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

    # -- signed links (gateway.auth.links) ------------------------------------------------------------------
    def sign(self, path: str, client: str, *, now: float | None = None, extra: str = "") -> str:
        """``path`` with ``exp``, ``client`` and ``sig`` appended; ``extra`` is an already-encoded query."""
        return self.links.sign(path, client, now=now, extra=extra)

    def signed(self, path: str, params: dict[str, str], *, now: float | None = None) -> Principal | None:
        client = self.links.check(path, params, now=now)
        return Principal("signed", client) if client is not None else None

    def request(self, path: str, header: str | None, params: dict[str, str]) -> Principal | None:
        """The principal of a ``/dicomweb`` request, or None (→ 401)."""
        return self.bearer(header) or self.signed(path, params)

    # -- review-page roles -----------------------------------------------------------------------------------
    @staticmethod
    def may(role: str, action: str) -> bool:
        return action in _ROLE_ALLOWS.get(role, set())
