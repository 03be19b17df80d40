"""The report's HTML rendition laid out as a PDF, for PACS viewers that show Encapsulated PDF but not HTML.

Pure: HTML bytes in, PDF bytes out. PyMuPDF's Story lays the HTML out on A4 pages (MuPDF's HTML engine: no
network, no scripts; the rendition has no images, only links). Chinese text falls back to MuPDF's built-in
CJK font, which is then subset so a report stays tens of kilobytes instead of megabytes.
"""

from __future__ import annotations

import importlib
from typing import Any

_CSS = "body { font-family: sans-serif; font-size: 11pt; line-height: 1.4; } h1 { font-size: 15pt; }"
_MARGIN = 56  # points (about 2 cm)


def html_to_pdf(html: bytes, title: str) -> bytes:
    """Lay ``html`` (UTF-8) out on A4 pages; the PDF's Title is ``title``."""
    pymupdf: Any = importlib.import_module("pymupdf")  # typed loosely: PyMuPDF's annotations are partial
    story = pymupdf.Story(html=html.decode("utf-8", "replace"), user_css=_CSS)
    page = pymupdf.paper_rect("a4")
    where = pymupdf.Rect(page.x0 + _MARGIN, page.y0 + _MARGIN, page.x1 - _MARGIN, page.y1 - _MARGIN)
    # write_with_links keeps the sentences' links to their images (a plain DocumentWriter drops them).
    doc = story.write_with_links(lambda _number, _filled: (page, where, None))
    try:
        doc.set_metadata({"title": title, "creator": "gateway", "producer": "PyMuPDF"})
        doc.subset_fonts()
        data: bytes = doc.tobytes(garbage=3, deflate=True)
    finally:
        doc.close()
    return data
