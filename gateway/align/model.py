"""Values the aligner takes and returns. Frozen, so that alignment stays a pure function of its inputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Method = Literal["explicit", "figure", "kos", "anatomy", "drafted"]

#: Strongest first; a sentence's links are reported in this order.
METHOD_ORDER: tuple[Method, ...] = ("explicit", "figure", "kos", "anatomy", "drafted")

KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"  # PS3.4 B.5, Key Object Selection Document Storage


@dataclass(frozen=True)
class InstanceInfo:
    """One instance of the study with its series attributes (PS3.3 C.7.3.1, C.7.6.1, C.8)."""

    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    series_number: int | None = None
    instance_number: int | None = None
    modality: str | None = None
    body_part: str | None = None
    laterality: str | None = None
    view_position: str | None = None
    series_description: str | None = None
    image_laterality: str | None = None
    window_center: float | None = None
    window_width: float | None = None
    rows: int | None = None
    columns: int | None = None
    #: ImagePositionPatient and ImageOrientationPatient (PS3.3 C.7.6.2), for ordering slices along the normal.
    image_position: tuple[float, float, float] | None = None
    image_orientation: tuple[float, float, float, float, float, float] | None = None


@dataclass(frozen=True)
class AlignOptions:
    """Knobs of the aligner; defaults come from ``[fhir]`` settings."""

    anatomy_cues: bool = True
    figure_min_score: float = 0.45
    #: How far the best match must beat the best instance that is neither its neighbour nor its twin.
    figure_margin: float = 0.012
    shortlist: int = 8
    anatomy_max_series: int = 3
    #: Least fidelity of a registered match (gateway/align/verify.py); the second with foreign words nearby.
    figure_fidelity: float = 0.95
    figure_foreign_fidelity: float = 0.96
    #: What words about another study near a figure do: leave it unresolved, or ask for the higher fidelity.
    figure_foreign: Literal["unresolved", "verify"] = "unresolved"
    #: An adjacent slice whose registered residual is not this much (a share) larger than the best's ties
    #: with it, and the link names it.
    neighbour_margin: float = 0.1
    #: Slices within this distance of the best match are its neighbourhood, not its rivals.
    neighbourhood_mm: float = 10.0
    #: References beyond these are not linked (a hostile or broken report must not multiply the work).
    max_refs_per_sentence: int = 20
    max_refs_per_document: int = 500


@dataclass(frozen=True)
class Sentence:
    """A sentence of a paragraph, with its offsets into the paragraph's text."""

    paragraph: int
    index: int
    start: int
    end: int
    text: str
    section: str | None = None


@dataclass(frozen=True)
class Link:
    """A sentence (or drafted finding) tied to an instance or a series.

    An unresolved reference is kept as a link with ``resolved=False`` and no UIDs: the reference exists in the
    report even though nothing in the study answers it.
    """

    text: str
    image_ref: str | None
    sop_instance_uid: str | None
    series_instance_uid: str | None
    method: Method
    confidence: float
    resolved: bool = True
    paragraph: int | None = None
    sentence: int | None = None
    source: Literal["report", "draft"] = "report"
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["confidence"] = round(self.confidence, 4)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Link:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class Alignment:
    """All sentences of the report (linked or not) and all links."""

    sentences: tuple[Sentence, ...]
    links: tuple[Link, ...]

    def links_of(self, paragraph: int, sentence: int) -> list[Link]:
        return [
            link
            for link in self.links
            if link.paragraph == paragraph and link.sentence == sentence and link.source == "report"
        ]
