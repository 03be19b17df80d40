"""Errors of FHIR mapping and serving; the API turns each into an OperationOutcome.

::

    GatewayError
    └── FhirError                 (http 500, code exception)
        ├── InvalidResource       a built resource failed validation (500, code invariant)
        ├── InvalidSearch         a query we do not understand (400, code not-supported / invalid)
        ├── Unauthorized          no or wrong bearer token (401, code login)
        ├── Forbidden             a client outside its rights, e.g. AuditEvent (403, code forbidden)
        ├── NotFound              unknown type, id or version (404, code not-found)
        ├── MethodNotAllowed      an interaction the server does not offer (405, code not-supported)
        └── NotAcceptable         a format other than JSON asked for (406, code not-supported)
"""

from __future__ import annotations

from gateway.errors import GatewayError


class FhirError(GatewayError):
    status = 500
    code = "exception"


class InvalidResource(FhirError):
    code = "invariant"


class InvalidSearch(FhirError):
    status = 400
    code = "not-supported"


class Unauthorized(FhirError):
    status = 401
    code = "login"


class Forbidden(FhirError):
    """Authenticated, but this client may not do this (403, code forbidden)."""

    status = 403
    code = "forbidden"


class NotFound(FhirError):
    status = 404
    code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    code = "not-supported"

    def __init__(self, message: str, allow: str = "GET, HEAD") -> None:
        super().__init__(message)
        self.allow = allow


class NotAcceptable(FhirError):
    status = 406
    code = "not-supported"


class NotModified(FhirError):
    """A conditional read whose version the client already has (304, no body)."""

    status = 304
    code = "informational"

    def __init__(self, etag: str) -> None:
        super().__init__("not modified")
        self.etag = etag
