"""Windows a report figure may have been captured under, for showing a candidate instance the same way.

A viewer screenshot keeps the window the radiologist chose, which is often not the instance's own: a lung
series captured under a mediastinal window saturates differently, and no grey-level normalisation undoes
clipping. So shortlisted candidates are also shown under the windows of the study's own instances (of the
same modality) and the presets of ``mappings/windows.yaml`` (PS3.3 C.11.2.1.2), validated on load.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, field_validator

from gateway.align.model import InstanceInfo
from gateway.mappings import mapping_path

MAPPING = mapping_path("windows.yaml")

Window = tuple[float, float]


class WindowPreset(BaseModel):
    name: str
    modalities: list[str] = Field(min_length=1)
    center: float
    width: float = Field(gt=1)

    @field_validator("modalities")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]


class WindowMapping(BaseModel):
    source: str
    edition: str
    presets: list[WindowPreset]


@lru_cache(maxsize=4)
def load_windows(path: Path = MAPPING) -> WindowMapping:
    return WindowMapping.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def _key(window: Window) -> Window:
    # Windows a few units apart render the same at matching resolution; compare them rounded.
    return (round(window[0]), round(window[1]))


def alternative_windows(
    instances: Sequence[InstanceInfo], path: Path = MAPPING
) -> dict[str, tuple[Window, ...]]:
    """For each instance with a modality, the windows to try besides its own, in a stable order."""
    presets = load_windows(path).presets
    study: dict[str, dict[Window, None]] = {}
    for inst in instances:
        center, width = inst.window_center, inst.window_width
        if inst.modality and center is not None and width is not None and width > 1:
            study.setdefault(inst.modality.upper(), {})[_key((center, width))] = None
    by_modality: dict[str, tuple[Window, ...]] = {}
    out: dict[str, tuple[Window, ...]] = {}
    for inst in instances:
        if not inst.modality:
            continue
        modality = inst.modality.upper()
        if modality not in by_modality:
            windows = dict(study.get(modality, {}))
            for preset in presets:
                if modality in preset.modalities:
                    windows.setdefault(_key((preset.center, preset.width)), None)
            by_modality[modality] = tuple(windows)
        own = (
            _key((inst.window_center, inst.window_width))
            if inst.window_center is not None and inst.window_width is not None
            else None
        )
        alternatives = tuple(w for w in by_modality[modality] if w != own)
        if alternatives:
            out[inst.sop_instance_uid] = alternatives
    return out
