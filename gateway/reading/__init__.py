"""Reading reports: PDF text layer, OCR, layout into paragraphs, sections and figure references.

``read_bytes`` and ``read_path`` turn a PDF, an image, or a DICOM Encapsulated PDF / SR / scanned image into a
:class:`Document` (schema in ``docs/document-schema.md``). The finders ``find_figure_refs``,
``detect_section`` and ``detect_status`` are pure functions over text, for reuse by the aligner and the FHIR
mapper.
"""

from gateway.reading.document import (
    SCHEMA_VERSION,
    Block,
    Document,
    Engine,
    Figure,
    FigureRef,
    Line,
    Page,
    Paragraph,
    ReadResult,
)
from gateway.reading.engines import OcrEngine, OcrLine, make_engine
from gateway.reading.figure_refs import find_figure_refs
from gateway.reading.reader import read_bytes, read_path, sniff
from gateway.reading.sections import detect_section, detect_status
from gateway.reading.settings import ReadingSettings

__all__ = [
    "SCHEMA_VERSION",
    "Block",
    "Document",
    "Engine",
    "Figure",
    "FigureRef",
    "Line",
    "OcrEngine",
    "OcrLine",
    "Page",
    "Paragraph",
    "ReadResult",
    "ReadingSettings",
    "detect_section",
    "detect_status",
    "find_figure_refs",
    "make_engine",
    "read_bytes",
    "read_path",
    "sniff",
]
