"""What the words around a figure reference say about the figure: a window cue, or another study.

"纵隔窗" / "mediastinal window" picks between two reconstructions of the same slices (the cue vocabulary
is the window cues of ``mappings/anatomy.yaml``); "prior", "外院", "2024" lower the prior that the figure
belongs to this study (``mappings/figure_context.yaml``), so that it must fit its best match more closely
to be linked.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from gateway.align.anatomy import Cue, find_cues
from gateway.mappings import mapping_path

MAPPING = mapping_path("figure_context.yaml")
_YEAR = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)")


class _Terms(BaseModel):
    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)


class ContextMapping(BaseModel):
    source: str
    edition: str
    years: bool = True
    terms: _Terms


@lru_cache(maxsize=4)
def load_context(path: Path = MAPPING) -> ContextMapping:
    return ContextMapping.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


@lru_cache(maxsize=4)
def _foreign_pattern(path: Path = MAPPING) -> re.Pattern[str]:
    mapping = load_context(path)
    alts = [re.escape(t) for t in mapping.terms.zh]
    alts += [rf"(?<![A-Za-z]){re.escape(t)}(?![A-Za-z])" for t in mapping.terms.en]
    return re.compile("|".join(alts), re.IGNORECASE)


def foreign_words(text: str, path: Path = MAPPING) -> list[str]:
    """The words in ``text`` that say a figure may come from another study (empty: none)."""
    normal = unicodedata.normalize("NFKC", text)
    found = [m.group(0) for m in _foreign_pattern(path).finditer(normal)]
    if load_context(path).years:
        found += _YEAR.findall(normal)
    return found


def window_cues(text: str) -> list[Cue]:
    """The window cues (lung, mediastinal, bone window...) named in ``text``."""
    return [cue for cue in find_cues(text) if cue.kind == "window"]
