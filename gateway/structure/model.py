"""What the extractor returns: frozen values, so that extraction stays a pure function of the sentence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gateway.structure.lexicon import Side

Presence = Literal["present", "absent"]


@dataclass(frozen=True)
class Size:
    """One to three dimensions, in millimetres (centimetres converted), as written in the sentence."""

    dims_mm: tuple[float, ...]
    text: str
    approximate: bool = False
    #: "3-5 mm": ``dims_mm`` holds the upper bound.
    range: bool = False


@dataclass(frozen=True)
class Site:
    key: str
    code: str | None
    display: str
    laterality: Side | None = None
    segment: str | None = None
    text: str = ""


@dataclass(frozen=True)
class Finding:
    """One finding mentioned in a sentence."""

    kind: str
    code: str | None
    display: str
    text: str
    start: int
    end: int
    presence: Presence = "present"
    uncertain: bool = False
    site: Site | None = None
    size: Size | None = None
    #: How many were named ("两枚结节" → 2, "multiple nodules" → -1 for "several, not counted").
    count: int | None = None
    descriptors: tuple[str, ...] = ()
    #: The cue that made it absent or uncertain, for the reader of the published Observation.
    cues: tuple[str, ...] = ()

    @property
    def laterality(self) -> Side | None:
        return self.site.laterality if self.site else None


@dataclass(frozen=True)
class Interval:
    value: float
    #: UCUM: ``d``, ``wk``, ``mo``, ``a``.
    unit: str


@dataclass(frozen=True)
class Recommendation:
    """A follow-up recommendation ("建议3个月后复查胸部CT", "follow-up CT in 3 months")."""

    action: str
    text: str
    interval: Interval | None = None
    modality: str | None = None


@dataclass(frozen=True)
class Extraction:
    text: str
    findings: tuple[Finding, ...] = ()
    recommendation: Recommendation | None = None
    #: Sizes that no finding took (a sentence naming a size only: "大小约12mm").
    loose_sizes: tuple[Size, ...] = field(default=())
