"""PDF pages: the exact text layer, embedded figures, and page rendering for OCR (PyMuPDF)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.errors import ReadError
from gateway.reading.document import BBox, Figure, Line
from gateway.reading.engines.base import Image
from gateway.reading.figure_refs import find_figure_refs
from gateway.reading.settings import ReadingSettings

_BOLD = 16  # PyMuPDF span flag
# Fonts whose ToUnicode maps ideographs to Kangxi radicals or compatibility forms, and hyphens to U+2011,
# give the right glyphs but the wrong code points; these ranges are folded to their NFKC form.
_FOLD = re.compile(r"[\u2e80-\u2fdf\uf900-\ufaff\u2010\u2011]")


def fold_codepoints(text: str) -> str:
    return _FOLD.sub(
        lambda m: "-" if m.group(0) in "\u2010\u2011" else unicodedata.normalize("NFKC", m.group(0)), text
    )


def _pymupdf() -> Any:
    # Typed loosely: PyMuPDF's own annotations are partial and untyped calls would fail strict checking.
    import pymupdf

    return pymupdf


@dataclass
class PdfFigure:
    figure: Figure
    data: bytes


def open_pdf(data: bytes, settings: ReadingSettings) -> Any:
    """Open a PDF, refusing what cannot or must not be read (encrypted, corrupt, too many pages)."""
    pymupdf = _pymupdf()
    pymupdf.TOOLS.mupdf_display_errors(False)
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:
        raise ReadError(f"corrupt PDF: {exc}") from exc
    if doc.needs_pass or doc.is_encrypted:
        doc.close()
        raise ReadError("encrypted PDF: a password is needed to read it")
    try:
        count = doc.page_count
    except Exception as exc:
        raise ReadError(f"corrupt PDF: {exc}") from exc
    if count == 0:
        doc.close()
        raise ReadError("corrupt PDF: it has no pages")
    if count > settings.max_pages:
        doc.close()
        raise ReadError(f"PDF has {count} pages, more than the limit of {settings.max_pages}")
    return doc


def text_lines(page: Any) -> list[Line]:
    """The page's text-layer lines with font size and weight; the text is exact, so confidence is 1."""
    lines: list[Line] = []
    info = page.get_text("dict", flags=0)
    for block in info.get("blocks", []):
        for line in block.get("lines", []):
            spans = [s for s in line.get("spans", []) if s.get("text", "").strip()]
            if not spans:
                continue
            text = fold_codepoints("".join(s["text"] for s in line["spans"]).strip())
            x0, y0, x1, y1 = line["bbox"]
            lines.append(
                Line(
                    text=text,
                    bbox=(round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)),
                    confidence=1.0,
                    font_size=round(max(s["size"] for s in spans), 2),
                    bold=all(bool(s["flags"] & _BOLD) or "bold" in s["font"].lower() for s in spans),
                )
            )
    return lines


def usable_text(lines: list[Line], settings: ReadingSettings) -> bool:
    chars = "".join(ln.text for ln in lines)
    visible = [c for c in chars if not c.isspace()]
    if len(visible) < settings.min_text_chars:
        return False
    # Text extracted without a usable font map comes out as replacement characters.
    return sum(1 for c in visible if c == "\ufffd") < 0.1 * len(visible)


def image_coverage(page: Any) -> float:
    """The largest share of the page that one image covers."""
    area = page.rect.width * page.rect.height
    if area <= 0:
        return 0.0
    best = 0.0
    try:
        infos = page.get_image_info()
    except Exception:  # unreadable images: judge the page by its text alone
        return 0.0
    for info in infos:
        x0, y0, x1, y1 = info["bbox"]
        best = max(best, max(0.0, x1 - x0) * max(0.0, y1 - y0) / area)
    return min(best, 1.0)


def placed_images(page: Any) -> list[dict[str, Any]]:
    """Each image drawn on the page (box, pixel size) with the xref of its image object, decoding nothing.

    PyMuPDF's ``get_image_info(xrefs=True)`` finds xrefs by hashing every image, which decodes it in full: a
    30000 x 30000 image costs 860 MiB before its size could be checked. Here boxes come from the plain
    image info and xrefs from the page's image list (its dictionaries only), matched on pixel size, bit depth
    and colour space in drawing order. An image the list cannot name (an inline image) keeps xref 0.
    """
    infos = [dict(info) for info in page.get_image_info()]
    pending: dict[tuple[int, int, int], list[int]] = {}
    for item in page.get_images(full=True):
        xref, width, height, bpc = int(item[0]), int(item[2]), int(item[3]), int(item[4])
        pending.setdefault((width, height, bpc), []).append(xref)
    for info in infos:
        candidates = pending.get((int(info["width"]), int(info["height"]), int(info.get("bpc", 0))), [])
        # An image drawn twice appears once in the list: the first xref of its kind stays for later draws.
        info["xref"] = candidates.pop(0) if len(candidates) > 1 else (candidates[0] if candidates else 0)
    return infos


def oversized_images(page: Any, settings: ReadingSettings) -> list[tuple[int, int]]:
    """Pixel sizes of the page's images over ``max_image_pixels``, from their dictionaries alone."""
    try:
        items = page.get_images(full=True)
    except Exception:
        return []
    return [
        (int(item[2]), int(item[3]))
        for item in items
        if int(item[2]) * int(item[3]) > settings.max_image_pixels
    ]


def image_boxes(page: Any, settings: ReadingSettings) -> list[BBox]:
    """The boxes of the page's images that may be figures (not page-size scans, not specks), in points."""
    area = page.rect.width * page.rect.height
    try:
        infos = page.get_image_info()
    except Exception:
        return []
    boxes: list[BBox] = []
    for info in infos:
        x0, y0, x1, y1 = (float(v) for v in info["bbox"])
        if min(int(info["width"]), int(info["height"])) < settings.min_figure_side:
            continue
        if area and (x1 - x0) * (y1 - y0) >= settings.scan_image_coverage * area:
            continue
        boxes.append((x0, y0, x1, y1))
    return boxes


def render(page: Any, settings: ReadingSettings) -> tuple[Image, float, list[str]]:
    """Render a page to RGB at the configured dpi, lowering the dpi if the page would be too many pixels.

    Returns the image, the scale from page points to image pixels, and warnings.
    """
    warnings: list[str] = []
    dpi = float(settings.dpi)
    w_in, h_in = page.rect.width / 72.0, page.rect.height / 72.0
    if w_in <= 0 or h_in <= 0:
        raise ReadError(f"page {page.number + 1} has no area")
    pixels = w_in * h_in * dpi * dpi
    if pixels > settings.max_render_pixels:
        dpi = (settings.max_render_pixels / (w_in * h_in)) ** 0.5
        warnings.append(f"page {page.number + 1} is {w_in:.0f}x{h_in:.0f} in; rendered at {dpi:.0f} dpi")
    pix = page.get_pixmap(dpi=max(1, int(dpi)), alpha=False)
    image = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width, pix.n)
    if pix.n == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3]), pix.width / page.rect.width, warnings


def figures(
    doc: Any, page: Any, lines: list[Line], settings: ReadingSettings
) -> tuple[list[PdfFigure], list[str]]:
    """Embedded images of a text-layer page, with the caption near each one giving its label."""
    pymupdf = _pymupdf()
    out: list[PdfFigure] = []
    warnings: list[str] = []
    number = page.number + 1
    area = page.rect.width * page.rect.height
    seen: set[int] = set()
    try:
        infos = placed_images(page)
    except Exception as exc:  # a broken image object must not cost the page its text
        return [], [f"page {number}: embedded images could not be listed: {exc}"]
    for info in infos:
        xref = int(info.get("xref") or 0)
        width, height = int(info["width"]), int(info["height"])
        x0, y0, x1, y1 = (round(v, 2) for v in info["bbox"])
        if xref in seen or min(width, height) < settings.min_figure_side:
            continue
        if area and (x1 - x0) * (y1 - y0) >= settings.scan_image_coverage * area:
            continue  # a scanned page, not a figure
        if width * height > settings.max_image_pixels:
            warnings.append(
                f"page {number}: image of {width}x{height} px over the pixel limit, not extracted"
            )
            continue
        seen.add(xref)
        try:
            data, media_type = _image_bytes(doc, page, xref, (x0, y0, x1, y1), pymupdf)
        except Exception as exc:
            warnings.append(f"page {number}: an embedded image could not be extracted: {exc}")
            continue
        caption, label, fig_no = caption_of((x0, y0, x1, y1), lines)
        ext = "png" if media_type == "image/png" else "jpg"
        out.append(
            PdfFigure(
                figure=Figure(
                    label=label,
                    number=fig_no,
                    page=number,
                    bbox=(x0, y0, x1, y1),
                    caption=caption,
                    artifact=f"figure-p{number}-{len(out) + 1}.{ext}",
                    media_type=media_type,
                    sha256=hashlib.sha256(data).hexdigest(),
                    width=width,
                    height=height,
                ),
                data=data,
            )
        )
    return out, warnings


def _image_bytes(doc: Any, page: Any, xref: int, bbox: BBox, pymupdf: Any) -> tuple[bytes, str]:
    if xref:
        extracted = doc.extract_image(xref)
        ext = str(extracted.get("ext", "")).lower()
        if ext in ("png", "jpeg", "jpg"):
            return bytes(extracted["image"]), "image/png" if ext == "png" else "image/jpeg"
        pix = pymupdf.Pixmap(doc, xref)
        if pix.n - pix.alpha >= 4:
            pix = pymupdf.Pixmap(pymupdf.csRGB, pix)
        return bytes(pix.tobytes("png")), "image/png"
    # An inline image has no xref: render its area instead.
    pix = page.get_pixmap(clip=pymupdf.Rect(*bbox), dpi=150, alpha=False)
    return bytes(pix.tobytes("png")), "image/png"


def caption_of(box: BBox, lines: list[Line]) -> tuple[str | None, str | None, int | None]:
    """The nearest line above or below the image that starts with a figure label."""
    best: tuple[float, Line, int | None, str | None] | None = None
    for line in lines:
        refs = find_figure_refs(line.text)
        if not refs or refs[0].kind != "figure" or refs[0].start > 2:
            continue
        lx0, ly0, lx1, ly1 = line.bbox
        if min(lx1, box[2]) - max(lx0, box[0]) <= 0:
            continue
        height = max(1.0, ly1 - ly0)
        gap = ly0 - box[3] if ly0 >= box[3] - height / 2 else box[1] - ly1
        if gap < -height or gap > 4 * height:
            continue
        if best is None or abs(gap) < best[0]:
            best = (abs(gap), line, refs[0].number, refs[0].label)
    if best is None:
        return None, None, None
    return best[1].text, best[3], best[2]
