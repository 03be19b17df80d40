"""DICOM SR (Basic Text, Enhanced, Comprehensive): the content tree read as text with headings.

PS3.3 C.17.3 (SR Document Content Module). Containers become headings; TEXT, CODE, NUM, PNAME, DATE, TIME and
DATETIME items become paragraphs. No OCR is involved.
"""

from __future__ import annotations

from typing import Any

from gateway.reading.document import Block, Line, Page, Paragraph
from gateway.reading.layout import RefBudget, assign_sections
from gateway.reading.sections import detect_section

SR_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
    "1.2.840.10008.5.1.4.1.1.88.35": "Extensible SR",
}

_ZERO = (0.0, 0.0, 0.0, 0.0)


def _meaning(item: Any, keyword: str = "ConceptNameCodeSequence") -> str:
    seq = item.get(keyword)
    if not seq:
        return ""
    return str(seq[0].get("CodeMeaning", "")).strip()


def _value(item: Any) -> str:
    kind = str(item.get("ValueType", ""))
    if kind == "TEXT":
        return str(item.get("TextValue", "")).strip()
    if kind == "CODE":
        return _meaning(item, "ConceptCodeSequence")
    if kind == "NUM":
        seq = item.get("MeasuredValueSequence")
        if not seq:
            return ""
        unit = _meaning(seq[0], "MeasurementUnitsCodeSequence")
        return f"{seq[0].get('NumericValue', '')} {unit}".strip()
    if kind == "PNAME":
        return str(item.get("PersonName", "")).strip()
    if kind in ("DATE", "TIME", "DATETIME"):
        return str(item.get(kind.title() if kind != "DATETIME" else "DateTime", "")).strip()
    return ""


def _walk(items: Any, texts: list[str], section: str | None) -> None:
    for item in items or []:
        kind = str(item.get("ValueType", ""))
        name = _meaning(item)
        if kind == "CONTAINER":
            if name:
                texts.append(name)
            found = detect_section(name) if name else None
            _walk(item.get("ContentSequence"), texts, found[0] if found else section)
            continue
        value = _value(item)
        if not value:
            continue
        found = detect_section(name) if name else None
        if found and found[0] != section:
            # A heading-named item outside its own container ("Impression" TEXT at the root) opens a section.
            texts.append(name)
            section = found[0]
            texts.append(value)
        elif kind == "TEXT" or not name:
            texts.append(value)
        else:
            texts.append(f"{name}: {value}")
        _walk(item.get("ContentSequence"), texts, section)


def read_sr(ds: Any, budget: RefBudget | None = None) -> tuple[Page, list[Paragraph], str | None]:
    """The SR as one page without geometry, its paragraphs, and its declared status."""
    texts: list[str] = []
    title = _meaning(ds)
    if title:
        texts.append(title)
    _walk(ds.get("ContentSequence"), texts, None)
    paragraphs = [Paragraph(index=i, text=t, page=1, bbox=_ZERO) for i, t in enumerate(texts)]
    lines = [Line(text=t, bbox=_ZERO, confidence=1.0) for t in texts]
    page = Page(
        number=1,
        width=0,
        height=0,
        unit="none",
        source="sr",
        blocks=[Block(bbox=_ZERO, lines=lines)] if lines else [],
    )
    status: str | None = None
    if str(ds.get("PreliminaryFlag", "")).upper() == "PRELIMINARY":
        status = "preliminary"
    elif (
        str(ds.get("CompletionFlag", "")).upper() == "COMPLETE"
        and str(ds.get("VerificationFlag", "")).upper() == "VERIFIED"
    ):
        status = "final"
    return page, assign_sections(paragraphs, budget=budget), status
