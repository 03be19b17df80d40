"""The lexicons and cues of ``mappings/structured_findings.yaml``, validated once on load.

Every phrase list must be non-empty in both languages where the extractor needs both, every site and finding
code is a SNOMED CT concept id (digits, or null for text only), and every pattern compiles.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.errors import ConfigError
from gateway.mappings import mapping_path

Side = Literal["right", "left", "bilateral"]
SNOMED = "http://snomed.info/sct"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Phrases(_Strict):
    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)

    def all(self) -> list[str]:
        return [*self.zh, *self.en]


def _sctid(value: str | None) -> str | None:
    if value is not None and not (value.isdigit() and 6 <= len(value) <= 18):
        raise ValueError(f"{value!r} is not a SNOMED CT concept id")
    return value


class LateralityEntry(Phrases):
    code: str
    display: str

    _code = field_validator("code")(_sctid)


class FindingEntry(Phrases):
    code: str | None
    display: str
    regions: list[str]
    default_site: str | None = None
    negated_by: list[str] = Field(default_factory=list)

    _code = field_validator("code")(_sctid)


class SiteEntry(Phrases):
    code: str | None
    display: str
    region: str
    laterality: Side | None = None
    lateralizable: bool = False

    _code = field_validator("code")(_sctid)

    @model_validator(mode="after")
    def _patterns_compile(self) -> SiteEntry:
        for pattern in self.all():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"site {self.display}: pattern {pattern!r} does not compile: {exc}") from exc
        if self.laterality and self.lateralizable:
            raise ValueError(f"site {self.display} has a fixed laterality and cannot take another")
        return self


class Cues(_Strict):
    negation_pre: Phrases
    negation_post: Phrases
    pseudo: Phrases
    uncertainty: Phrases
    continuation: Phrases
    terminators: Phrases
    existence: Phrases


class Sizes(_Strict):
    units: dict[Literal["mm", "cm"], list[str]]
    approximate: list[str]
    not_a_size: list[str]


class Counts(_Strict):
    words: dict[Literal["zh", "en"], dict[str, int]]
    classifiers: list[str]


class FixedInterval(_Strict):
    value: float
    unit: Literal["d", "wk", "mo", "a"]


class Recommendations(_Strict):
    cues: Phrases
    advice: Phrases
    past: list[str]
    fixed_intervals: dict[str, FixedInterval]
    actions: dict[str, Phrases]
    units: dict[Literal["wk", "mo", "a", "d"], Phrases]
    numbers: dict[Literal["zh", "en"], dict[str, float]]
    modalities: dict[str, Phrases]


class Lexicon(_Strict):
    source: str
    edition: str
    laterality: dict[Side, LateralityEntry]
    findings: dict[str, FindingEntry]
    sites: dict[str, SiteEntry]
    segments: Phrases
    descriptors: dict[str, Phrases]
    cues: Cues
    sizes: Sizes
    counts: Counts
    recommendations: Recommendations

    @model_validator(mode="after")
    def _consistent(self) -> Lexicon:
        regions = {s.region for s in self.sites.values()} | {"any"}
        for key, finding in self.findings.items():
            if not finding.zh or not finding.en:
                raise ValueError(f"finding {key} needs Chinese and English terms")
            unknown = set(finding.regions) - regions
            if unknown:
                raise ValueError(f"finding {key} names unknown regions {sorted(unknown)}")
            if finding.default_site and finding.default_site not in self.sites:
                raise ValueError(f"finding {key}: default_site {finding.default_site!r} is not a site")
        for key, site in self.sites.items():
            if not site.zh or not site.en:
                raise ValueError(f"site {key} needs Chinese and English patterns")
        if set(self.laterality) != {"right", "left", "bilateral"}:
            raise ValueError("laterality must name right, left and bilateral")
        return self


def load_lexicon(path: Path | None = None) -> Lexicon:
    """Read and validate the lexicon; :class:`ConfigError` names the file and the problem."""
    path = path or mapping_path("structured_findings.yaml")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot load mapping {path}: {exc}") from exc
    try:
        return Lexicon.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid mapping {path}: {exc}") from exc


@lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    return load_lexicon()
