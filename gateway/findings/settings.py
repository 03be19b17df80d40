"""Settings for drafting findings (the ``[findings]`` section)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FindingsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkpoint: Path | None = Field(
        default=None, description="a trained checkpoint directory; None = no drafts"
    )
    beam_size: int = Field(default=3, ge=1, le=16)
    length_penalty: float = Field(
        default=1.0, ge=0.0, le=4.0, description="beam scores are divided by length**length_penalty; 0 = off"
    )
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        le=512,
        description="longest draft in tokens; None = the checkpoint's training limit",
    )
    batch_size: int = Field(default=8, ge=1, le=256, description="studies decoded together")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto = the GPU when present")
