"""Signed links: short-lived URLs a browser can open without an ``Authorization`` header (an ``<img>`` in
HTML the gateway served).

A signed link is a path with three query parameters appended: ``exp`` (Unix seconds), ``client`` (whom it
was issued to, for the audit trail) and ``sig`` = hex HMAC-SHA256 over ``path \\n exp \\n client``. The key
is derived from the site's static API token, so every route of one gateway (``/fhir`` signs, ``/dicomweb``
checks) and every process sharing the token agree without sharing state. Other query parameters (``window``,
``quality``...) are not signed: they change how the same image is drawn, not which image.

An empty token signs nothing and admits nothing: a key everyone can compute would admit everyone.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

SIGNATURE_PARAMS = ("exp", "client", "sig")
_KEY_LABEL = b"gateway signed links v1"


class LinkSigner:
    """Issues and checks signed links; ``lifetime`` is seconds (``[dicomweb] signed_url_lifetime``)."""

    def __init__(self, token: str, lifetime: int) -> None:
        self._key = hmac.new(token.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest() if token else b""
        self.lifetime = lifetime

    @property
    def enabled(self) -> bool:
        return bool(self._key)

    def _signature(self, path: str, exp: int, client: str) -> str:
        msg = f"{path}\n{exp}\n{client}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def sign(self, path: str, client: str, *, now: float | None = None, extra: str = "") -> str:
        """``path`` with ``exp``, ``client`` and ``sig`` appended; ``extra`` is an already-encoded query.

        ``path`` is the path the gateway itself serves (``/dicomweb/...``), without scheme, host or a
        proxy's prefix; callers put the public base URL in front.
        """
        if not self.enabled:
            raise ValueError("signed links need a configured API token")
        exp = int((time.time() if now is None else now) + self.lifetime)
        query = urlencode({"exp": exp, "client": client, "sig": self._signature(path, exp, client)})
        return f"{path}?{extra + '&' if extra else ''}{query}"

    def check(self, path: str, params: dict[str, str], *, now: float | None = None) -> str | None:
        """The client a valid, unexpired signature for ``path`` was issued to; None otherwise."""
        if not self.enabled:
            return None
        exp_raw, client, sig = params.get("exp", ""), params.get("client", ""), params.get("sig", "")
        if not exp_raw.isascii() or not exp_raw.isdigit() or len(exp_raw) > 12 or not client or not sig:
            return None
        exp = int(exp_raw)
        if exp < (time.time() if now is None else now):
            return None
        if not hmac.compare_digest(sig.encode(), self._signature(path, exp, client).encode()):
            return None
        return client
