"""Settings of the review page (``[ui]``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class OidcLogin(BaseModel):
    """The site's OpenID Connect server for review-page sign-in (authorization code flow with PKCE).

    The server's endpoints come from ``{issuer}/.well-known/openid-configuration``. A user signs in when the
    ID token's ``username_claim`` names an enabled review-page account; roles stay with the accounts.
    """

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(description="the issuer URL, exactly as in the ID token's iss")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = Field(
        default=None, description="for a confidential client (client_secret_post); none for a public one"
    )
    scopes: str = "openid profile"
    username_claim: str = Field(default="preferred_username", description="the claim that names the account")
    display_name: str = Field(default="OpenID Connect", description="shown on the login button")
    redirect_uri: str | None = Field(
        default=None,
        description="the callback URL registered at the server; default: this site's /ui/oidc/callback",
    )


class UiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_lifetime: int = Field(default=8 * 3600, ge=60, description="seconds a login lasts")
    secure_cookies: bool = Field(default=False, description="set Secure on cookies (behind HTTPS)")
    page_size: int = Field(default=25, ge=5, le=500)
    language: str = Field(default="en", pattern="^(en|zh)$", description="default UI language")
    oidc: OidcLogin | None = Field(
        default=None, description="sign in through the site's OpenID Connect server"
    )
