"""Settings of the review page (``[ui]``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class UiSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_lifetime: int = Field(default=8 * 3600, ge=60, description="seconds a login lasts")
    secure_cookies: bool = Field(default=False, description="set Secure on cookies (behind HTTPS)")
    page_size: int = Field(default=25, ge=5, le=500)
    language: str = Field(default="en", pattern="^(en|zh)$", description="default UI language")
