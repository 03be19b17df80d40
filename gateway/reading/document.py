"""The read document: one versioned schema for every source (see ``docs/document-schema.md``).

It extends the seed pipeline's ``pages → blocks → lines`` JSON with paragraphs, sections, figure references,
embedded figures, the engine and the report status. Figure bytes are not inside the document: each figure
names an artifact (name, sha256, media type) and the bytes travel beside it in :class:`ReadResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

SCHEMA_VERSION = "1.0"

BBox = tuple[float, float, float, float]
SourceKind = Literal["pdf", "image", "dicom-pdf", "dicom-sr", "dicom-image"]
PageSource = Literal["text-layer", "ocr", "sr"]
Unit = Literal["pt", "px", "none"]


class EngineModel(BaseModel):
    """One model file an engine ran: its role, name, where it came from and its digest (for Provenance)."""

    role: str
    name: str
    file: str
    package: str
    sha256: str


class Engine(BaseModel):
    name: str
    version: str
    models: list[EngineModel] = Field(default_factory=list)


class Line(BaseModel):
    text: str
    bbox: BBox
    confidence: float = Field(ge=0, le=1)
    font_size: float | None = None
    bold: bool = False
    #: "figure": text inside a figure's box (annotations read by OCR), kept out of paragraphs
    role: Literal["body", "header", "footer", "figure"] = "body"


class TableCell(BaseModel):
    text: str
    bbox: BBox


class Block(BaseModel):
    """Lines read together. A ``table`` block also gives its cells row by row (``rows``), column-aligned."""

    kind: Literal["text", "table"] = "text"
    bbox: BBox
    lines: list[Line]
    #: for a table: each row's cells, left to right; an empty cell is ``None``
    rows: list[list[TableCell | None]] = Field(default_factory=list)


class AlternateReading(BaseModel):
    """A second reading of the same page, kept when a page has both a text layer and a page-size image."""

    source: PageSource
    blocks: list[Block]


class Page(BaseModel):
    number: int = Field(ge=1)
    width: float
    height: float
    unit: Unit
    source: PageSource
    blocks: list[Block] = Field(default_factory=list)
    alternate: AlternateReading | None = None


class FigureRef(BaseModel):
    kind: Literal["figure", "position"]
    raw: str
    label: str | None = None
    number: int | None = None
    series: int | None = None
    instance: int | None = None
    #: A montage panel named by the reference ("图2A", "Figure 3, left"): "A", "B", ... in reading order.
    panel: str | None = None
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class Paragraph(BaseModel):
    index: int = Field(ge=0)
    text: str
    page: int = Field(ge=1)
    bbox: BBox
    section: str | None = None
    heading: bool = False
    #: "caption": a figure's caption, kept out of the body's sentences and links.
    role: Literal["body", "caption"] = "body"
    figure_refs: list[FigureRef] = Field(default_factory=list)


class Figure(BaseModel):
    #: "embedded": an image object of a text-layer PDF; "page-region": cut from a scanned or rendered page.
    source: Literal["embedded", "page-region"] = "embedded"
    label: str | None = None
    number: int | None = None
    page: int = Field(ge=1)
    bbox: BBox
    caption: str | None = None
    artifact: str
    media_type: str
    sha256: str
    width: int
    height: int


class Correction(BaseModel):
    """A change made to recognised text after OCR: what was read, what it became, and why."""

    page: int = Field(ge=1)
    #: the corrected line's box, in the pixels of the image OCR read
    bbox: BBox
    original: str
    corrected: str
    kind: Literal["unit", "punctuation", "spacing", "character", "lexicon"]
    reason: str


class Document(BaseModel):
    schema_version: str = SCHEMA_VERSION
    source_kind: SourceKind
    engine: Engine
    status: str | None = None
    pages: list[Page] = Field(default_factory=list)
    paragraphs: list[Paragraph] = Field(default_factory=list)
    figures: list[Figure] = Field(default_factory=list)
    #: every change made to OCR text after recognition (units, punctuation, lexicon terms); none is silent
    corrections: list[Correction] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.paragraphs)


@dataclass(frozen=True)
class ReadResult:
    """A read document and its figure images (artifact name -> (media type, bytes))."""

    document: Document
    figure_images: dict[str, tuple[str, bytes]] = field(default_factory=dict)
