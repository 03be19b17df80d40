"""Reading an ``Authorization: Bearer`` header (no dependencies, so every route can use it)."""

from __future__ import annotations


def bearer_credentials(header: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer <token>`` header (RFC 6750 2.1; the scheme is
    case-insensitive, RFC 9110 11.1), or None for another scheme or an empty token."""
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    given = rest.strip(" \t")
    if scheme.lower() != "bearer" or not given:
        return None
    return given
