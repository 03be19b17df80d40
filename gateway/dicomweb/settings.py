"""Settings of the DICOMweb API (``[dicomweb]``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DicomwebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signed_url_lifetime: int = Field(
        default=300, ge=10, le=86_400, description="seconds a signed link (for <img> in HTML) stays valid"
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed to call /dicomweb from a browser; empty = none"
    )
    max_stow_bytes: int = Field(default=1024**3, ge=1024, description="largest STOW-RS request body")
    thumbnail_size: int = Field(default=128, ge=16, le=1024)
    default_quality: int = Field(default=90, ge=1, le=100)
