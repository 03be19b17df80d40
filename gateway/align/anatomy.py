"""Low-confidence links from anatomy, laterality, view and window cues to series.

"右肺上叶" or "lung window" does not name an image, but it narrows the study to the series that show it. The
cue dictionary is data (``mappings/anatomy.yaml``), validated on load. Cues of one sentence are combined by
intersection (a window cue narrows an anatomy cue); a sentence whose cues leave more than a few series gets no
link, since a link to everything says nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from statistics import median
from typing import Literal

import yaml
from pydantic import BaseModel, Field

from gateway.align.model import InstanceInfo
from gateway.mappings import mapping_path

MAPPING = mapping_path("anatomy.yaml")


class _Window(BaseModel):
    center: tuple[float, float]
    width: tuple[float, float]


class _SeriesMatch(BaseModel):
    body_part: list[str] = Field(default_factory=list)
    description: list[str] = Field(default_factory=list)
    view_position: list[str] = Field(default_factory=list)
    laterality: list[str] = Field(default_factory=list)
    window: _Window | None = None


class _Terms(BaseModel):
    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)


class Cue(BaseModel):
    name: str
    kind: Literal["anatomy", "window", "view", "laterality"]
    terms: _Terms
    laterality: Literal["R", "L"] | None = None
    series: _SeriesMatch


class CueMapping(BaseModel):
    source: str
    edition: str
    cues: list[Cue]


@lru_cache(maxsize=4)
def load_cues(path: Path = MAPPING) -> CueMapping:
    return CueMapping.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


@lru_cache(maxsize=4)
def _patterns(path: Path = MAPPING) -> tuple[tuple[Cue, re.Pattern[str]], ...]:
    out = []
    for cue in load_cues(path).cues:
        alts = [re.escape(t) for t in cue.terms.zh]
        # English terms must stand as words; short upper-case ones (RUL, PA) only in upper case.
        for term in cue.terms.en:
            word = rf"(?<![A-Za-z]){re.escape(term)}(?![A-Za-z])"
            alts.append(word if len(term) <= 3 else f"(?i:{word})")
        out.append((cue, re.compile("|".join(alts))))
    return tuple(out)


def find_cues(text: str, path: Path = MAPPING) -> list[Cue]:
    """Cues named in ``text``; a longer cue hides the shorter ones it contains (右肺上叶 hides 肺)."""
    normal = unicodedata.normalize("NFKC", text)
    hits: list[tuple[int, int, Cue]] = []
    for cue, pattern in _patterns(path):
        for m in pattern.finditer(normal):
            hits.append((m.start(), m.end(), cue))
    hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
    kept: list[tuple[int, int, Cue]] = []
    for s, e, cue in hits:
        if any(ks <= s and e <= ke for ks, ke, _ in kept):
            continue
        kept.append((s, e, cue))
    seen: dict[str, Cue] = {}
    for _, _, cue in kept:
        seen.setdefault(cue.name, cue)
    return list(seen.values())


@dataclass(frozen=True)
class SeriesView:
    """What the cues look at in one series."""

    series_instance_uid: str
    body_part: str
    description: str
    view_positions: frozenset[str]
    lateralities: frozenset[str]
    window: tuple[float, float] | None


def series_views(instances: Sequence[InstanceInfo]) -> list[SeriesView]:
    by_series: dict[str, list[InstanceInfo]] = {}
    for inst in instances:
        if inst.rows is not None:
            by_series.setdefault(inst.series_instance_uid, []).append(inst)
    views = []
    for uid, members in by_series.items():
        first = members[0]
        centers = [i.window_center for i in members if i.window_center is not None]
        widths = [i.window_width for i in members if i.window_width is not None]
        views.append(
            SeriesView(
                uid,
                (first.body_part or "").upper(),
                (first.series_description or "").lower(),
                frozenset(v.upper() for i in members for v in (i.view_position,) if v),
                frozenset(v.upper() for i in members for v in (i.laterality, i.image_laterality) if v),
                (median(centers), median(widths)) if centers and widths else None,
            )
        )
    return views


def _matches(cue: Cue, view: SeriesView) -> bool:
    if cue.laterality and view.lateralities and cue.laterality not in view.lateralities:
        return False
    m = cue.series
    if view.body_part and view.body_part in {b.upper() for b in m.body_part}:
        return True
    if view.description and any(k.lower() in view.description for k in m.description):
        return True
    if view.view_positions & {v.upper() for v in m.view_position}:
        return True
    if view.lateralities & {v.upper() for v in m.laterality}:
        return True
    if m.window is not None and view.window is not None:
        c, w = view.window
        return m.window.center[0] <= c <= m.window.center[1] and m.window.width[0] <= w <= m.window.width[1]
    return False


def resolve_cues(cues: Sequence[Cue], views: Sequence[SeriesView], *, max_series: int) -> list[str]:
    """Series UIDs that every cue of the sentence allows; empty when the cues say nothing useful."""
    if not cues or not views:
        return []
    allowed = {v.series_instance_uid for v in views}
    answered = False
    for cue in cues:
        hit = {v.series_instance_uid for v in views if _matches(cue, v)}
        if not hit:
            continue  # a cue nothing in the study answers does not veto the others
        answered = True
        allowed &= hit
    if (
        not answered
        or not allowed
        or len(allowed) > max_series
        or (len(allowed) == len(views) and len(views) > 1)
    ):
        return []
    return sorted(allowed)
