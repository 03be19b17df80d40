"""Read a report from bytes: sniff the type, take the text layer or OCR each page, lay out, find references.

The only I/O here is :func:`read_path` reading its file; everything else takes and returns values.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from gateway.errors import GatewayError, ReadError
from gateway.reading.correction import correct_line
from gateway.reading.document import (
    AlternateReading,
    Block,
    Correction,
    Document,
    Engine,
    EngineModel,
    Figure,
    Line,
    Page,
    Paragraph,
    ReadResult,
    SourceKind,
)
from gateway.reading.engines import OcrEngine, make_engine
from gateway.reading.engines.base import Image
from gateway.reading.images import decode_image, enhance, prepare_page, to_rgb8, without_marks
from gateway.reading.layout import PageText, RefBudget, layout
from gateway.reading.sections import detect_status
from gateway.reading.settings import ReadingSettings

Kind = Literal["pdf", "image", "dicom"]
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"


def sniff(data: bytes) -> Kind:
    """The kind of document in ``data``, from its magic bytes."""
    if data[128:132] == b"DICM":
        return "dicom"
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if (
        data[:8] == b"\x89PNG\r\n\x1a\n"
        or data[:3] == b"\xff\xd8\xff"
        or data[:4] in (b"II*\x00", b"MM\x00*")
    ):
        return "image"
    # A dataset without preamble (implicit VR little endian) starts with a group 0x0002 or 0x0008 tag.
    if len(data) > 8 and data[:2] in (b"\x02\x00", b"\x08\x00") and data[3:4] == b"\x00":
        return "dicom"
    raise ReadError("unknown document type: not a PDF, PNG, JPEG, TIFF or DICOM file")


@dataclass
class _Context:
    settings: ReadingSettings
    engine: OcrEngine | None
    deadline: float
    warnings: list[str] = field(default_factory=list)
    used_ocr: bool = False
    corrections: list[Correction] = field(default_factory=list)
    refs: RefBudget = field(default_factory=RefBudget)

    def ocr(self) -> OcrEngine:
        if self.engine is None:
            self.engine = make_engine(self.settings.engine, self.settings)
        self.used_ocr = True
        return self.engine

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise ReadError(f"reading took longer than the limit of {self.settings.time_limit_s:.0f} s")


def read_bytes(
    data: bytes,
    *,
    filename: str | None = None,
    settings: ReadingSettings,
    engine: OcrEngine | None = None,
) -> ReadResult:
    """Read one report document (PDF, image, or DICOM Encapsulated PDF / SR / image) into a :class:`Document`.

    Raises :class:`~gateway.errors.ReadError` for anything that cannot be read; other errors are bugs.
    """
    if not data:
        raise ReadError(f"{filename or 'document'} is empty")
    if len(data) > settings.max_input_bytes:
        raise ReadError(f"document of {len(data)} bytes is over the limit of {settings.max_input_bytes}")
    ctx = _Context(
        settings=settings,
        engine=engine,
        deadline=time.monotonic() + settings.time_limit_s,
        refs=RefBudget(settings.max_figure_refs),
    )
    try:
        kind = sniff(data)
        if kind == "pdf":
            return _read_pdf(data, ctx, "pdf")
        if kind == "image":
            return _read_images(decode_image(data, settings), ctx, "image")
        return _read_dicom(data, ctx)
    except GatewayError:
        raise
    except MemoryError as exc:
        raise ReadError("document too large to read in memory") from exc
    except Exception as exc:
        # Malformed input reaches parser code paths that raise their own or generic errors; those are read
        # errors. Anything raised from our own code is a bug and propagates.
        if not _from_parser(exc):
            raise
        raise ReadError(f"unreadable {filename or 'document'}: {type(exc).__name__}: {exc}") from exc


_PARSERS = ("pymupdf", "fitz", "pydicom", "PIL", "cv2", "numpy", "zlib", "struct")


def _from_parser(exc: BaseException) -> bool:
    if type(exc).__module__.split(".")[0] in _PARSERS:
        return True
    if isinstance(exc, (ValueError, KeyError, IndexError, TypeError, OSError, RuntimeError, EOFError)):
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
        return str(module).split(".")[0] in _PARSERS
    return False


def read_path(path: str | Path, settings: ReadingSettings, engine: OcrEngine | None = None) -> ReadResult:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc}") from exc
    return read_bytes(data, filename=path.name, settings=settings, engine=engine)


def _ocr_page(image: Image, number: int, ctx: _Context) -> tuple[PageText, Image]:
    """The page's OCR lines, and the image they were read from (deskewed, cleaned up)."""
    engine = ctx.ocr()
    flat, done = prepare_page(image, ctx.settings.enhance)
    ctx.warnings.extend(f"page {number}: {what}; boxes are in the flattened image" for what in done)
    prepared, angle = enhance(flat, ctx.settings.enhance)
    if angle:
        ctx.warnings.append(
            f"page {number}: deskewed by {angle:.1f} degrees; boxes are in the deskewed image"
        )
    # Figures are cut from `prepared` (in colour); recognition reads it with pen and stamp ink whitened.
    ocr_input, suppressed = without_marks(prepared) if ctx.settings.suppress_marks else (prepared, False)
    if suppressed:
        ctx.warnings.append(f"page {number}: coloured pen or stamp ink was whitened before recognition")
    lines: list[Line] = []
    for ln in engine.read(ocr_input):
        bbox = (ln.bbox[0], ln.bbox[1], ln.bbox[2], ln.bbox[3])
        text = ln.text
        if ctx.settings.correct:
            text, changes = correct_line(text, ln.confidence, ctx.settings.correct_below)
            ctx.corrections.extend(
                Correction(
                    page=number,
                    bbox=bbox,
                    original=c.original,
                    corrected=c.corrected,
                    kind=c.kind,
                    reason=c.reason,
                )
                for c in changes
            )
        lines.append(Line(text=text, bbox=bbox, confidence=ln.confidence))
    h, w = prepared.shape[:2]
    page = PageText(number=number, width=float(w), height=float(h), unit="px", source="ocr", lines=lines)
    return page, prepared


def _region_figures(
    image: Image,
    ocr_lines: list[Line],
    number: int,
    ctx: _Context,
    *,
    scale: float = 1.0,
    caption_lines: list[Line] | None = None,
) -> list[tuple[Figure, bytes]]:
    """Figures cut from a page image, in the page's unit (pixels / ``scale``), labelled by their captions."""
    from gateway.reading import regions
    from gateway.reading.pdf import caption_of

    out: list[tuple[Figure, bytes]] = []
    boxes = regions.find_regions(image, [ln.bbox for ln in ocr_lines], ctx.settings)
    for k, box in enumerate(boxes, start=1):
        region = regions.crop(image, box)
        x0, y0, x1, y1 = (round(v / scale, 2) for v in region.bbox)
        caption, label, fig_no = caption_of((x0, y0, x1, y1), caption_lines or ocr_lines)
        figure = Figure(
            source="page-region",
            label=label,
            number=fig_no,
            page=number,
            bbox=(x0, y0, x1, y1),
            caption=caption,
            artifact=f"figure-p{number}-region{k}.png",
            media_type="image/png",
            sha256=region.sha256,
            width=region.width,
            height=region.height,
        )
        out.append((figure, region.png))
    return out


def _read_pdf(data: bytes, ctx: _Context, source_kind: SourceKind) -> ReadResult:
    from gateway.reading import pdf

    doc = pdf.open_pdf(data, ctx.settings)
    pages: list[PageText] = []
    alternates: dict[int, AlternateReading] = {}
    figures: list[Figure] = []
    images: dict[str, tuple[str, bytes]] = {}
    try:
        for page in doc:
            ctx.check_time()
            number = page.number + 1
            lines = pdf.text_lines(page)
            has_text = pdf.usable_text(lines, ctx.settings)
            scanned = pdf.image_coverage(page) >= ctx.settings.scan_image_coverage
            if has_text:
                boxes = pdf.image_boxes(page, ctx.settings)
                pages.append(
                    PageText(number, page.rect.width, page.rect.height, "pt", "text-layer", lines, boxes)
                )
                found, warnings = pdf.figures(doc, page, lines, ctx.settings)
                ctx.warnings.extend(warnings)
                for fig in found:
                    figures.append(fig.figure)
                    images[fig.figure.artifact] = (fig.figure.media_type, fig.data)
            oversized = pdf.oversized_images(page, ctx.settings) if scanned or not has_text else []
            if oversized:
                # Refused by the sizes in the image dictionaries, before anything decodes the pixels.
                w, h = oversized[0]
                reason = (
                    f"page {number}: image of {w}x{h} px is over the limit of {ctx.settings.max_image_pixels}"
                    " pixels (reading.max_image_pixels)"
                )
                if not has_text:
                    raise ReadError(f"{reason}; the page cannot be OCR'd")
                ctx.warnings.append(f"{reason}; the page is read from its text layer only")
            elif scanned or not has_text:
                image, scale, warnings = pdf.render(page, ctx.settings)
                ctx.warnings.extend(warnings)
                ocr, prepared = _ocr_page(image, number, ctx)
                found_regions = _region_figures(
                    prepared,
                    ocr.lines,
                    number,
                    ctx,
                    scale=scale if has_text else 1.0,
                    caption_lines=lines if has_text else None,
                )
                for figure, png in found_regions:
                    figures.append(figure)
                    images[figure.artifact] = (figure.media_type, png)
                target = pages[-1] if has_text else ocr
                target.figures.extend(f.bbox for f, _ in found_regions)
                if has_text:
                    # Both readings are reported; the exact text layer wins. OCR boxes go back to points.
                    scaled = [
                        ln.model_copy(update={"bbox": tuple(round(v / scale, 2) for v in ln.bbox)})
                        for ln in ocr.lines
                    ]
                    alternates[number] = AlternateReading(
                        source="ocr", blocks=[Block(bbox=ln.bbox, lines=[ln]) for ln in scaled]
                    )
                else:
                    pages.append(ocr)
    finally:
        doc.close()
    out_pages, paragraphs = layout(pages, ctx.refs)
    for p in out_pages:
        if p.number in alternates:
            p.alternate = alternates[p.number]
    return _finish(ctx, source_kind, out_pages, paragraphs, whole_captions(figures, paragraphs), images)


def whole_captions(figures: list[Figure], paragraphs: list[Paragraph]) -> list[Figure]:
    """Give each figure its whole caption paragraph; its first line was found next to the figure."""
    out: list[Figure] = []
    for figure in figures:
        caption = figure.caption
        if caption:
            for para in paragraphs:
                if para.role == "caption" and para.page == figure.page and para.text.startswith(caption):
                    caption = para.text
                    break
        out.append(figure.model_copy(update={"caption": caption}) if caption != figure.caption else figure)
    return out


def _read_images(frames: list[Image], ctx: _Context, source_kind: SourceKind) -> ReadResult:
    if len(frames) > ctx.settings.max_pages:
        raise ReadError(f"{len(frames)} frames, more than the limit of {ctx.settings.max_pages}")
    pages: list[PageText] = []
    figures: list[Figure] = []
    images: dict[str, tuple[str, bytes]] = {}
    for index, frame in enumerate(frames):
        ctx.check_time()
        page, prepared = _ocr_page(frame, index + 1, ctx)
        for figure, png in _region_figures(prepared, page.lines, page.number, ctx):
            figures.append(figure)
            images[figure.artifact] = (figure.media_type, png)
            page.figures.append(figure.bbox)
        pages.append(page)
    out_pages, paragraphs = layout(pages, ctx.refs)
    return _finish(ctx, source_kind, out_pages, paragraphs, whole_captions(figures, paragraphs), images)


def _read_dicom(data: bytes, ctx: _Context) -> ReadResult:
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise ReadError(f"unreadable DICOM file: {exc}") from exc
    sop_class = str(ds.get("SOPClassUID", ""))
    from gateway.reading.sr import SR_SOP_CLASSES, read_sr

    if sop_class == ENCAPSULATED_PDF or "EncapsulatedDocument" in ds:
        mime = str(ds.get("MIMETypeOfEncapsulatedDocument", "application/pdf"))
        payload = bytes(ds.get("EncapsulatedDocument", b"") or b"")
        if mime.lower() != "application/pdf" or b"%PDF-" not in payload[:1024]:
            raise ReadError(f"EncapsulatedDocument is not a PDF (MIME type {mime!r})")
        return _read_pdf(payload, ctx, "dicom-pdf")
    if sop_class in SR_SOP_CLASSES or "ContentSequence" in ds:
        page, paragraphs, status = read_sr(ds, ctx.refs)
        result = _finish(ctx, "dicom-sr", [page], paragraphs, [], {}, engine=_sr_engine())
        if status and result.document.status is None:
            result.document.status = status
        return result
    if "PixelData" in ds:
        frames = _dicom_frames(ds, ctx.settings)
        return _read_images(frames, ctx, "dicom-image")
    raise ReadError(f"DICOM object of SOP class {sop_class or 'unknown'} holds no report")


def _dicom_frames(ds: Any, settings: ReadingSettings) -> list[Image]:
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if rows * cols > settings.max_image_pixels:
        raise ReadError(f"DICOM image of {cols}x{rows} px is over the pixel limit")
    if count > settings.max_pages:
        raise ReadError(f"DICOM image has {count} frames, more than the limit of {settings.max_pages}")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise ReadError(f"cannot decode DICOM pixel data: {exc}") from exc
    mono1 = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    samples = int(ds.get("SamplesPerPixel", 1))
    if count > 1:
        return [to_rgb8(frame, mono1) for frame in pixels]
    if samples == 1 and pixels.ndim == 3:
        return [to_rgb8(frame, mono1) for frame in pixels]
    return [to_rgb8(pixels, mono1)]


def _sr_engine() -> Engine:
    return Engine(name="dicom-sr", version=f"pydicom {metadata.version('pydicom')}")


def _finish(
    ctx: _Context,
    source_kind: SourceKind,
    pages: list[Page],
    paragraphs: list[Any],
    figures: list[Figure],
    images: dict[str, tuple[str, bytes]],
    engine: Engine | None = None,
) -> ReadResult:
    if not any(p.text.strip() for p in paragraphs):
        raise ReadError("no text found")
    if ctx.refs.dropped:
        # Counts only: the text itself may carry patient details.
        ctx.warnings.append(
            f"more than {ctx.settings.max_figure_refs} figure references; only the first "
            f"{ctx.settings.max_figure_refs} are kept (reading.max_figure_refs)"
        )
    if engine is None:
        if ctx.used_ocr and ctx.engine is not None:
            models = [EngineModel(**m) for m in getattr(ctx.engine, "models", ())]
            engine = Engine(name=ctx.engine.name, version=ctx.engine.version, models=models)
        else:
            engine = Engine(name="text-layer", version=f"pymupdf {metadata.version('pymupdf')}")
    all_text = "\n".join(ln.text for p in pages for b in p.blocks for ln in b.lines)
    document = Document(
        source_kind=source_kind,
        engine=engine,
        status=detect_status(all_text),
        pages=pages,
        paragraphs=paragraphs,
        figures=figures,
        corrections=ctx.corrections,
        warnings=ctx.warnings,
    )
    return ReadResult(document=document, figure_images=images)
