"""API authorization shared by ``/fhir``, ``/images``, ``/dicomweb`` and ``/ui``.

Routes call :meth:`Authenticator.principal_for` (or ``authenticate`` + ``require``) and turn
:class:`AuthError` (``status`` 401 or 403) into their own error body; ``build_auth_routes`` adds the token
endpoint and the SMART discovery document.
"""

from typing import Any

from gateway.auth.core import Authenticator, AuthError, Principal, TokenError, smart_configuration
from gateway.auth.links import LinkSigner
from gateway.auth.routes import build_auth_routes

_shared: dict[tuple[int, str], Authenticator] = {}


def authenticator(settings: Any, static_token: str) -> Authenticator:
    """The process's one Authenticator for these settings (tokens it issued are valid on every route)."""
    key = (id(settings), static_token)
    if key not in _shared:
        audit = settings.fhir.audit_token.get_secret_value() if settings.fhir.audit_token else ""
        _shared[key] = Authenticator(settings.auth, static_token, audit)
    return _shared[key]


__all__ = [
    "AuthError",
    "Authenticator",
    "LinkSigner",
    "Principal",
    "TokenError",
    "build_auth_routes",
    "smart_configuration",
]
