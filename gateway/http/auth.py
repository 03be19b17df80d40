"""Bearer tokens for the HTTP API.

The token comes from the settings (``--api-token`` or ``GATEWAY_API_TOKEN``). When none is set, one is
generated once into ``<data dir>/api-token`` (mode 0600) and its location - never its value - is logged.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from pathlib import Path

from gateway.auth.bearer import bearer_credentials
from gateway.settings import Settings

log = logging.getLogger(__name__)


def resolve_api_token(settings: Settings) -> str:
    if settings.api_token is not None:
        return settings.api_token.get_secret_value()
    path = settings.data_dir / "api-token"
    if path.is_file():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    log.warning("generated an API token", extra={"token_file": str(Path(path).resolve())})
    return token


def token_matches(header: str | None, token: str) -> bool:
    """Constant-time check of an ``Authorization: Bearer ...`` header against the static token.

    An empty configured token admits nobody, whatever the header says.
    """
    given = bearer_credentials(header)
    if not token or given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))
