"""Settings of API authorization (the ``[auth]`` section): SMART Backend Services clients and trusted
OpenID Connect issuers. The static bearer token (``api_token``) stays as the simplest choice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SmartClient(BaseModel):
    """A registered backend-services client and its public keys (exactly one of jwks, jwks_file, jwks_url)."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, max_length=128)
    jwks: dict[str, Any] | None = Field(default=None, description="inline JWK Set (public keys)")
    jwks_file: Path | None = None
    jwks_url: str | None = None
    scopes: list[str] = Field(
        default_factory=lambda: ["system/*.rs"], description="the most this client may be granted"
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> SmartClient:
        given = [x for x in (self.jwks, self.jwks_file, self.jwks_url) if x is not None]
        if len(given) != 1:
            raise ValueError(f"client {self.client_id}: give exactly one of jwks, jwks_file, jwks_url")
        return self


class OidcIssuer(BaseModel):
    """A site's OpenID Connect server whose access tokens (JWTs) the gateway accepts."""

    model_config = ConfigDict(extra="forbid")

    issuer: str
    jwks_url: str
    audience: str | None = Field(default=None, description="required aud claim, if any")


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clients: list[SmartClient] = Field(default_factory=list)
    oidc: list[OidcIssuer] = Field(default_factory=list)
    token_lifetime: int = Field(default=300, ge=30, le=300, description="seconds an access token lives")
