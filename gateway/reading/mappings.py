"""Load and validate the reading mappings (``sections.yaml``, ``figure_refs.yaml``, ``lexicon.yaml``).

They are data, not code: the headings and reference patterns change with the hospitals we serve. Each file is
validated once and cached.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, field_validator

from gateway.errors import ConfigError
from gateway.mappings import mappings_dir

MAPPINGS_DIR = mappings_dir()

# "signature" closes the report body: the sign-off lines (reporting and verifying radiologist).
SECTION_KEYS = ("findings", "impression", "technique", "comparison", "indication", "history", "signature")
STATUS_KEYS = ("corrected", "amended", "preliminary", "final")


class SectionsMapping(BaseModel):
    source: str
    edition: str
    sections: dict[str, list[str]]
    status: dict[str, list[str]]

    @field_validator("sections")
    @classmethod
    def _sections(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = set(value) - set(SECTION_KEYS)
        if unknown:
            raise ValueError(f"unknown section keys {sorted(unknown)}; allowed {SECTION_KEYS}")
        for key, words in value.items():
            if not words or any(not str(w).strip() for w in words):
                raise ValueError(f"section {key!r} needs non-empty headings")
        return value

    @field_validator("status")
    @classmethod
    def _status(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = set(value) - set(STATUS_KEYS)
        if unknown:
            raise ValueError(f"unknown status keys {sorted(unknown)}; allowed {STATUS_KEYS}")
        return value


class RefPattern(BaseModel):
    name: str
    kind: Literal["figure", "position"]
    #: "figure" (图N, Figure N) or "image" (Image N, IMG N); the reference's label is "<label>:<number>".
    label: Literal["figure", "image"] | None = None
    regex: str
    #: whether more numbers may follow ("Figs. 2–3", "图2、3"), by the mapping's continuation marks
    continues: bool = False

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex {value!r}: {exc}") from exc
        groups = set(compiled.groupindex)
        if not groups & {"number", "series", "instance"}:
            raise ValueError(f"regex {value!r} needs a number or series/instance group")
        return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regex {value!r}: {exc}") from exc
    return value


class Continuation(BaseModel):
    """How further numbers continue a figure reference: list and range marks, and what a number is not."""

    list: str
    range: str
    not_before: str
    max_range: int = Field(default=10, ge=1, le=100)

    @field_validator("list", "range", "not_before")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return _check_regex(value)


PANEL_LETTERS = ("A", "B", "C", "D")


class FigureRefsMapping(BaseModel):
    source: str
    edition: str
    patterns: list[RefPattern] = Field(min_length=1)
    continuation: Continuation
    #: panel letter -> the words that name it ("left" -> A)
    panels: dict[str, list[str]]

    @field_validator("panels")
    @classmethod
    def _panels(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = set(value) - set(PANEL_LETTERS)
        if unknown:
            raise ValueError(f"unknown panel letters {sorted(unknown)}; allowed {PANEL_LETTERS}")
        words = [w for ws in value.values() for w in ws]
        if any(not w.strip() for w in words):
            raise ValueError("panel words must not be empty")
        if len({w.lower() for w in words}) != len(words):
            raise ValueError("a panel word names one panel only")
        return value


LEXICON_GROUPS = ("anatomy", "findings", "descriptors", "units")


class LexiconMapping(BaseModel):
    """Terms that post-recognition correction may restore, per group and language (``zh``, ``en``)."""

    source: str
    edition: str
    terms: dict[str, dict[Literal["zh", "en"], list[str]]]
    never_change: dict[Literal["zh", "en"], list[str]]
    keep: dict[Literal["zh", "en"], list[str]] = Field(default_factory=dict)

    @field_validator("terms")
    @classmethod
    def _terms(cls, value: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
        unknown = set(value) - set(LEXICON_GROUPS)
        if unknown:
            raise ValueError(f"unknown lexicon groups {sorted(unknown)}; allowed {LEXICON_GROUPS}")
        for group, langs in value.items():
            for lang, words in langs.items():
                if any(not str(w).strip() for w in words):
                    raise ValueError(f"lexicon {group}/{lang} has an empty term")
        return value


def _load_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot load mapping {path}: {exc}") from exc


def load_sections(path: Path | None = None) -> SectionsMapping:
    path = path or MAPPINGS_DIR / "sections.yaml"
    try:
        return SectionsMapping.model_validate(_load_yaml(path))
    except ValueError as exc:
        raise ConfigError(f"invalid mapping {path}: {exc}") from exc


def load_figure_refs(path: Path | None = None) -> FigureRefsMapping:
    path = path or MAPPINGS_DIR / "figure_refs.yaml"
    try:
        return FigureRefsMapping.model_validate(_load_yaml(path))
    except ValueError as exc:
        raise ConfigError(f"invalid mapping {path}: {exc}") from exc


@lru_cache(maxsize=1)
def sections_mapping() -> SectionsMapping:
    return load_sections()


@lru_cache(maxsize=1)
def figure_refs_mapping() -> FigureRefsMapping:
    return load_figure_refs()


def load_lexicon(path: Path | None = None) -> LexiconMapping:
    path = path or MAPPINGS_DIR / "lexicon.yaml"
    try:
        return LexiconMapping.model_validate(_load_yaml(path))
    except ValueError as exc:
        raise ConfigError(f"invalid mapping {path}: {exc}") from exc


@lru_cache(maxsize=1)
def lexicon_mapping() -> LexiconMapping:
    return load_lexicon()
