"""Lines → blocks → paragraphs, for text-layer and OCR pages alike.

Grouping uses what a reader sees: the gap between lines, horizontal overlap, indentation, font size and
weight. Two-column pages are read column by column between full-width lines. Repeated page headers and footers
are marked and left out of paragraphs. A paragraph that runs on across a column or page break, or around a
figure, is merged. A figure's caption (a line starting with a figure label next to a figure's box) is a
paragraph of its own with role "caption", never part of the body text around it. All of this is a pure
function of the lines, the figure boxes and the page sizes.
"""

from __future__ import annotations

import difflib
import re
import statistics
from dataclasses import dataclass, field

from gateway.reading.document import (
    BBox,
    Block,
    FigureRef,
    Line,
    Page,
    PageSource,
    Paragraph,
    TableCell,
    Unit,
)
from gateway.reading.figure_refs import figure_refs, find_figure_refs
from gateway.reading.sections import detect_section
from gateway.reading.text import compact, join_lines

MARGIN_BAND = 0.08  # the top and bottom 8 % of a page may hold running headers and footers
_PAGE_NUMBER = re.compile(r"^(第#+页(共#+页)?|page#+(of#+)?|#+/#+|-?#+-?|共#+页第#+页)$", re.IGNORECASE)
_TERMINAL = tuple("。．.!?！？;；")


@dataclass
class PageText:
    """One page's lines before layout, with where they came from."""

    number: int
    width: float
    height: float
    unit: Unit
    source: PageSource
    lines: list[Line]
    #: the boxes of the page's figures (embedded images, or image regions found on a scan), in the page's unit
    figures: list[BBox] = field(default_factory=list)


@dataclass
class _Row:
    lines: list[Line]

    @property
    def bbox(self) -> BBox:
        return _union([ln.bbox for ln in self.lines])

    @property
    def text(self) -> str:
        # Separate lines on one row are cells (near neighbours were merged already): keep them apart.
        return " ".join(ln.text for ln in self.lines)

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]

    @property
    def size(self) -> float:
        sizes = [ln.font_size for ln in self.lines if ln.font_size]
        return max(sizes) if sizes else self.height * 0.8

    @property
    def bold(self) -> bool:
        return all(ln.bold for ln in self.lines)


@dataclass
class _Piece:
    """A paragraph's share of one block: rows, and whether it must start a new paragraph."""

    page: int
    rows: list[_Row] = field(default_factory=list)
    starts_new: bool = True
    region_end: bool = False  # last piece before a column or page break
    right: float = 0.0  # the column's right edge
    em: float = 10.0
    heading: bool = False  # its last row is a heading
    title: bool = False  # a heading in a clearly larger font: a document title, not a section
    caption: bool = False  # a figure's caption: a paragraph of its own


def _union(boxes: list[BBox]) -> BBox:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def mark_margins(pages: list[PageText]) -> list[PageText]:
    """Mark running headers and footers: margin lines that repeat on several pages, and page numbers.

    Repeats are compared with digits masked (page numbers change) and with a similarity of 0.8, since OCR
    reads the same header a little differently on each page ("XX市" and "X×市").
    """

    def key(line: Line) -> str:
        return re.sub(r"\d+", "#", compact(line.text))

    margins: list[list[tuple[str, str]]] = [
        [(band, key(line)) for line in page.lines if (band := _band(line, page))] for page in pages
    ]

    def repeated(band: str, text: str, own: int) -> bool:
        for index, others in enumerate(margins):
            if index == own:
                continue
            for other_band, other in others:
                if other_band == band and (
                    other == text or difflib.SequenceMatcher(None, other, text).ratio() >= 0.8
                ):
                    return True
        return False

    out: list[PageText] = []
    for number, page in enumerate(pages):
        lines: list[Line] = []
        for line in page.lines:
            band = _band(line, page)
            if band and (_PAGE_NUMBER.match(key(line)) or repeated(band, key(line), number)):
                line = line.model_copy(update={"role": band})
            lines.append(line)
        out.append(
            PageText(page.number, page.width, page.height, page.unit, page.source, lines, page.figures)
        )
    return out


def _band(line: Line, page: PageText) -> str:
    if page.height <= 0:
        return ""
    if line.bbox[3] <= page.height * MARGIN_BAND:
        return "header"
    if line.bbox[1] >= page.height * (1 - MARGIN_BAND):
        return "footer"
    return ""


def _rows(lines: list[Line], em: float) -> list[_Row]:
    """Group lines sharing a baseline band into rows; neighbours closer than an em become one line."""
    rows: list[_Row] = []
    for line in sorted(lines, key=lambda ln: (ln.bbox[1], ln.bbox[0])):
        for row in rows[-3:]:
            rb = row.bbox
            overlap = min(rb[3], line.bbox[3]) - max(rb[1], line.bbox[1])
            if overlap > 0.5 * min(rb[3] - rb[1], line.bbox[3] - line.bbox[1]):
                row.lines.append(line)
                row.lines.sort(key=lambda ln: ln.bbox[0])
                break
        else:
            rows.append(_Row([line]))
    merged: list[_Row] = []
    for row in rows:
        cells: list[Line] = []
        for line in row.lines:
            if (
                cells
                and line.bbox[0] - cells[-1].bbox[2]
                < 0.5 * em  # OCR boxes are padded: a column gutter looks narrower
                and cells[-1].font_size == line.font_size
            ):
                prev = cells[-1]
                cells[-1] = prev.model_copy(
                    update={
                        "text": join_lines(prev.text, line.text),
                        "bbox": _union([prev.bbox, line.bbox]),
                        "confidence": min(prev.confidence, line.confidence),
                    }
                )
            else:
                cells.append(line)
        merged.append(_Row(cells))
    merged.sort(key=lambda r: r.bbox[1])
    return merged


def _gutter(rows: list[_Row], width: float, figures: list[BBox]) -> float | None:
    """The x of a column gutter if the page has two text columns, else None.

    Figures count as obstacles: a figure set in one column marks the gutter as well as text does, which
    matters on a page that holds a few lines of text beside its figures.
    """
    lines = [ln for r in rows for ln in r.lines]
    if len(lines) < 4 or width <= 0:
        return None
    boxes = [ln.bbox for ln in lines] + list(figures)
    steps = 40
    xs = [width * (0.3 + 0.4 * i / steps) for i in range(steps + 1)]
    counts = [sum(1 for b in boxes if b[0] < x < b[2]) for x in xs]
    crossing = min(counts)
    # The middle of the widest run of least-crossed positions: the gutter's centre, not its left edge.
    runs: list[list[int]] = []
    for i, count in enumerate(counts):
        if count == crossing:
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
    widest = max(runs, key=len)
    x = xs[widest[len(widest) // 2]]
    left = [ln for ln in lines if ln.bbox[2] <= x]
    right = [ln for ln in lines if ln.bbox[0] >= x]
    if len(left) < 2 or len(right) < 2 or crossing > 0.3 * len(boxes):
        return None
    left_x0 = min(ln.bbox[0] for ln in left)
    right_x1 = max(ln.bbox[2] for ln in right)
    # Table cells also leave a gap; only full text lines on both sides make columns. A short column (a few
    # lines beside a figure, its caption, a paragraph's last line) counts when its longest lines fill it.
    return x if _wide(left, x - left_x0) and _wide(right, right_x1 - x) else None


def _wide(lines: list[Line], side: float) -> bool:
    widths = [ln.bbox[2] - ln.bbox[0] for ln in lines]
    if statistics.median(widths) >= 0.5 * side:
        return True
    return max(widths) >= 0.8 * side and sum(1 for w in widths if w >= 0.5 * side) * 3 >= len(widths)


def _regions(rows: list[_Row], width: float, figures: list[BBox]) -> list[list[_Row]]:
    """Rows in reading order, cut into regions (a column between full-width rows, or a full-width run)."""
    gutter = _gutter(rows, width, figures)
    if gutter is None:
        return [rows] if rows else []
    regions: list[list[_Row]] = []
    full: list[_Row] = []
    left: list[_Row] = []
    right: list[_Row] = []

    def flush_columns() -> None:
        for column in (left, right):
            if column:
                regions.append(list(column))
                column.clear()

    for row in rows:
        n_left = sum(1 for ln in row.lines if ln.bbox[2] <= gutter)
        n_right = sum(1 for ln in row.lines if ln.bbox[0] >= gutter)
        # A row crossing the gutter is full width, and so is a form or table row: cells on both sides with
        # two or more on one side. Side-by-side column text has one line per column on a row.
        crossing = any(ln.bbox[0] < gutter < ln.bbox[2] for ln in row.lines)
        spans = crossing or (n_left >= 1 and n_right >= 1 and max(n_left, n_right) >= 2)
        if spans:
            flush_columns()
            full.append(row)
            continue
        if full:
            regions.append(full)
            full = []
        lefts = [ln for ln in row.lines if ln.bbox[2] <= gutter]
        rights = [ln for ln in row.lines if ln.bbox[0] >= gutter]
        if lefts:
            left.append(_Row(lefts))
        if rights:
            right.append(_Row(rights))
    flush_columns()
    if full:
        regions.append(full)
    return regions


def _em(lines: list[Line]) -> float:
    heights = [ln.bbox[3] - ln.bbox[1] for ln in lines if ln.bbox[3] > ln.bbox[1]]
    return statistics.median(heights) if heights else 10.0


def _is_heading(row: _Row, body_size: float) -> bool:
    text = row.text.strip()
    found = detect_section(text)
    if found and found[1] >= len(text) - 1:
        return True
    return len(text) <= 40 and not text.endswith(_TERMINAL) and (row.bold or row.size > body_size * 1.15)


def _inside(box: BBox, figure: BBox) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return figure[0] <= cx <= figure[2] and figure[1] <= cy <= figure[3]


def mark_figure_text(page: PageText) -> PageText:
    """Mark the lines inside a figure's box (OCR reads annotations and labels in images) as role "figure"."""
    if not page.figures:
        return page
    lines = [
        ln.model_copy(update={"role": "figure"})
        if ln.role == "body" and any(_inside(ln.bbox, f) for f in page.figures)
        else ln
        for ln in page.lines
    ]
    return PageText(page.number, page.width, page.height, page.unit, page.source, lines, page.figures)


def _starts_with_label(text: str) -> bool:
    refs = find_figure_refs(text[:40], limit=1)
    return bool(refs) and refs[0].kind == "figure" and refs[0].start <= 2


def _caption_starts(rows: list[_Row], figures: list[BBox]) -> set[int]:
    """For each figure, the nearest row above or below it that starts with a figure label and overlaps it."""
    starts: set[int] = set()
    labelled = [k for k, row in enumerate(rows) if _starts_with_label(row.text)]
    for box in figures:
        best: tuple[float, int] | None = None
        for k in labelled:
            x0, y0, x1, y1 = rows[k].bbox
            if min(x1, box[2]) - max(x0, box[0]) <= 0:
                continue
            height = max(1.0, y1 - y0)
            gap = y0 - box[3] if y0 >= box[3] - height / 2 else box[1] - y1
            if -height <= gap <= 4 * height and (best is None or abs(gap) < best[0]):
                best = (abs(gap), k)
        if best is not None:
            starts.add(best[1])
    return starts


def _split_at_figures(
    region: list[_Row], figures: list[BBox], starts: set[int], em: float
) -> list[list[_Row]]:
    """Cut a region at its captions and at figures between two rows; a caption run is tagged by its rows."""
    out: list[list[_Row]] = []
    current: list[_Row] = []
    in_caption = False
    for row in region:
        key = id(row.lines[0])
        prev = current[-1] if current else None
        between = prev is not None and any(
            prev.bbox[3] <= f[1] + em
            and f[3] - em <= row.bbox[1]
            and min(row.bbox[2], f[2]) > max(row.bbox[0], f[0])
            for f in figures
        )
        if key in starts:
            if current:
                out.append(current)
            current, in_caption = [row], True
            continue
        if in_caption and prev is not None:
            gap = row.bbox[1] - prev.bbox[3]
            same_size = abs(row.size - prev.size) <= 0.15 * max(row.size, prev.size)
            if gap <= 0.5 * max(prev.height, row.height) and same_size and not between:
                current.append(row)
                continue
        if (in_caption or between) and current:
            out.append(current)
            current = []
        in_caption = False
        current.append(row)
    if current:
        out.append(current)
    return out


def _pieces(page: PageText) -> tuple[list[Block], list[_Piece]]:
    body = [ln for ln in page.lines if ln.role == "body"]
    em = _em(body)
    body_size = statistics.median([ln.font_size or (ln.bbox[3] - ln.bbox[1]) * 0.8 for ln in body] or [10.0])
    blocks: list[Block] = []
    pieces: list[_Piece] = []
    rows = _rows(body, em)
    starts = {id(rows[k].lines[0]) for k in _caption_starts(rows, page.figures)}
    regions = [
        part
        for region in _regions(rows, page.width, page.figures)
        for part in _split_at_figures(region, page.figures, starts, em)
    ]
    for region in regions:
        if id(region[0].lines[0]) in starts:
            caption = _Piece(page=page.number, rows=region, right=max(r.bbox[2] for r in region), em=em)
            caption.caption = caption.region_end = True
            blocks.append(_block(region))
            pieces.append(caption)
            continue
        right = max(r.bbox[2] for r in region)
        left = min(r.bbox[0] for r in region)
        block_rows: list[_Row] = []
        region_pieces: list[_Piece] = []
        prev: _Row | None = None
        for row in region:
            heading = _is_heading(row, body_size)
            new_block = prev is None or (
                row.bbox[1] - prev.bbox[3] > 0.5 * em
                or abs(row.size - prev.size) > 0.2 * max(row.size, prev.size)
                or row.bold != prev.bold
            )
            if new_block and block_rows:
                blocks.append(_block(block_rows))
                block_rows = []
            starts_new = (
                new_block
                or heading
                or prev is None
                or len(row.lines) > 1
                or len(prev.lines) > 1
                or _is_heading(prev, body_size)
                or row.bbox[0] - left > 1.2 * em
                or _ended_short(prev, row, right, em)
                or detect_section(row.text) is not None
            )
            if starts_new or not region_pieces:
                region_pieces.append(_Piece(page=page.number, starts_new=True, right=right, em=em))
            region_pieces[-1].rows.append(row)
            region_pieces[-1].heading = heading
            region_pieces[-1].title = (
                heading and row.size > 1.3 * body_size and len(region_pieces[-1].rows) == 1
            )
            block_rows.append(row)
            prev = row
        if block_rows:
            blocks.append(_block(block_rows))
        if region_pieces:
            region_pieces[-1].region_end = True
            first = region_pieces[0]
            first_row = first.rows[0]
            # A region that starts flush left with a plain line may continue the previous region's paragraph.
            first.starts_new = _is_heading(first_row, body_size) or first_row.bbox[0] - left > 1.2 * em
        pieces.extend(region_pieces)
    return blocks, pieces


def _first_word_width(row: _Row) -> float:
    """The width of the row's first word (one character for CJK), from its average character width."""
    text = row.text.strip()
    if not text:
        return 0.0
    x0, _, x1, _ = row.lines[0].bbox
    per_char = (x1 - x0) / max(1, len(row.lines[0].text))
    word = re.match(r"[^\s\u2e80-\u9fff\uff00-\uffef]+", text)
    return per_char * (len(word.group(0)) if word else 1)


def _ended_short(prev: _Row, row: _Row, right: float, em: float) -> bool:
    # The previous line ended a paragraph if the next line's first word would have fitted after it.
    # One em of slack: OCR boxes are padded unevenly, so the column's right edge is only known to about an em.
    return right - prev.bbox[2] > _first_word_width(row) + 1.0 * em


def _overlaps(a: BBox, b: BBox) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > 0


def _table_runs(rows: list[_Row], width: float) -> list[list[_Row]]:
    """Runs of 3+ rows of 3+ short cells whose columns line up: a table, not two columns of text.

    Each row's cells must overlap the columns of the run's widest row (an empty cell is allowed), and no
    cell may be wider than a third of the page, which is what keeps a two-column page out.
    """
    runs: list[list[_Row]] = []
    current: list[_Row] = []

    def fits(row: _Row, columns: list[BBox]) -> bool:
        if len(row.lines) < 2 or any(ln.bbox[2] - ln.bbox[0] > width / 3 for ln in row.lines):
            return False
        return all(sum(_overlaps(ln.bbox, col) for col in columns) == 1 for ln in row.lines)

    def close() -> None:
        if len(current) >= 3:
            runs.append(list(current))
        current.clear()

    columns: list[BBox] = []
    for row in rows:
        wide_enough = len(row.lines) >= 3 and all(ln.bbox[2] - ln.bbox[0] <= width / 3 for ln in row.lines)
        if current and fits(row, columns):
            current.append(row)
            if len(row.lines) > len(columns):
                columns = [ln.bbox for ln in row.lines]
            continue
        close()
        if wide_enough:
            current.append(row)
            columns = [ln.bbox for ln in row.lines]
    close()
    return runs


def _table_block(run: list[_Row]) -> Block:
    widest = max(run, key=lambda r: len(r.lines))
    columns = [ln.bbox for ln in widest.lines]
    rows: list[list[TableCell | None]] = []
    for row in run:
        cells: list[TableCell | None] = [None] * len(columns)
        for ln in row.lines:
            j = next(k for k, col in enumerate(columns) if _overlaps(ln.bbox, col))
            cells[j] = TableCell(text=ln.text, bbox=ln.bbox)
        rows.append(cells)
    lines = [ln for r in run for ln in r.lines]
    return Block(kind="table", bbox=_union([ln.bbox for ln in lines]), lines=lines, rows=rows)


def tables(blocks: list[Block], lines: list[Line], width: float) -> list[Block]:
    """Replace the text blocks of each table found among ``lines`` by one ``table`` block with its cells."""
    body = [ln for ln in lines if ln.role == "body"]
    runs = _table_runs(_rows(body, _em(body)), width)
    if not runs:
        return blocks
    found = [_table_block(run) for run in runs]

    def taken(line: Line) -> bool:
        # Blocks hold the same lines (possibly merged copies): a line centred in a table belongs to it.
        cx, cy = (line.bbox[0] + line.bbox[2]) / 2, (line.bbox[1] + line.bbox[3]) / 2
        return any(t.bbox[0] <= cx <= t.bbox[2] and t.bbox[1] <= cy <= t.bbox[3] for t in found)

    kept: list[Block] = []
    for block in blocks:
        rest = [ln for ln in block.lines if not taken(ln)]
        if len(rest) == len(block.lines):
            kept.append(block)
        elif rest:
            kept.append(Block(bbox=_union([ln.bbox for ln in rest]), lines=rest))
    return sorted(kept + found, key=lambda b: (b.bbox[1], b.bbox[0]))


def _block(rows: list[_Row]) -> Block:
    lines = [ln for r in rows for ln in r.lines]
    return Block(bbox=_union([ln.bbox for ln in lines]), lines=lines)


def _continues(prev: _Piece, nxt: _Piece) -> bool:
    if nxt.starts_new or not prev.region_end or prev.heading or prev.caption or nxt.caption:
        return False
    last = prev.rows[-1]
    if abs(last.size - nxt.rows[0].size) > 0.2 * max(last.size, nxt.rows[0].size):
        return False
    text = last.text.rstrip()
    return (
        bool(text)
        and not text.endswith(_TERMINAL)
        and not _ended_short(last, nxt.rows[0], prev.right, prev.em)
    )


def layout(pages: list[PageText], budget: RefBudget | None = None) -> tuple[list[Page], list[Paragraph]]:
    """Blocks for each page and the document's paragraphs, with sections and figure references."""
    pages = [mark_figure_text(p) for p in mark_margins(pages)]
    out_pages: list[Page] = []
    groups: list[list[_Piece]] = []
    last_body: int | None = None  # the group a body piece may continue: captions stand beside the flow
    for page in pages:
        blocks, pieces = _pieces(page)
        blocks = tables(blocks, page.lines, page.width)
        margin = [ln for ln in page.lines if ln.role != "body"]
        blocks.extend(Block(bbox=ln.bbox, lines=[ln]) for ln in margin)
        out_pages.append(
            Page(
                number=page.number,
                width=page.width,
                height=page.height,
                unit=page.unit,
                source=page.source,
                blocks=blocks,
            )
        )
        for piece in pieces:
            if piece.caption:
                groups.append([piece])
            elif last_body is not None and _continues(groups[last_body][-1], piece):
                groups[last_body].append(piece)
            else:
                groups.append([piece])
                last_body = len(groups) - 1
    titles = {i for i, g in enumerate(groups) if g[0].title}
    return out_pages, assign_sections([_paragraph(i, g) for i, g in enumerate(groups)], titles, budget)


def _paragraph(index: int, group: list[_Piece]) -> Paragraph:
    text = ""
    for piece in group:
        for row in piece.rows:
            text = join_lines(text, row.text) if text else row.text
    first = group[0]
    bbox = _union([r.bbox for p in group if p.page == first.page for r in p.rows])
    role = "caption" if first.caption else "body"
    return Paragraph(index=index, text=text, page=first.page, bbox=bbox, role=role)


@dataclass
class RefBudget:
    """How many more figure references a document may hold, and whether some were left out."""

    remaining: int | None = None
    dropped: bool = False

    def take(self, text: str) -> list[FigureRef]:
        refs, truncated = figure_refs(text, self.remaining)
        if self.remaining is not None:
            self.remaining -= len(refs)
        self.dropped = self.dropped or truncated
        return refs


def assign_sections(
    paragraphs: list[Paragraph], titles: set[int] | None = None, budget: RefBudget | None = None
) -> list[Paragraph]:
    """Give each paragraph the section of the last heading before it, and find its figure references.

    A title (``titles``: indices of paragraphs set in a clearly larger font) that is not a section heading
    closes the current section: what follows a report title is not the previous report's impression.
    ``budget`` caps the references of the whole document. A caption keeps its references (its own figure's
    label) and the section it stands in, and opens no section.
    """
    budget = budget or RefBudget()
    current: str | None = None
    out: list[Paragraph] = []
    for index, para in enumerate(paragraphs):
        # A caption belongs to the section it stands in and opens none.
        found = detect_section(para.text) if para.role == "body" else None
        if found is None and titles and index in titles:
            current = None
        heading = False
        if found:
            current = found[0]
            heading = found[1] >= len(para.text.rstrip())
        out.append(
            para.model_copy(
                update={"section": current, "heading": heading, "figure_refs": budget.take(para.text)}
            )
        )
    return out
