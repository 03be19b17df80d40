"""Tables in the document schema: rows of column-aligned cells become one ``table`` block."""

from __future__ import annotations

from gateway.reading.document import Line
from gateway.reading.layout import PageText, layout


def line(text: str, x0: float, y0: float, x1: float, size: float = 10) -> Line:
    return Line(text=text, bbox=(x0, y0, x1, y0 + size * 1.2), confidence=1.0, font_size=size)


def page(lines: list[Line]) -> PageText:
    return PageText(number=1, width=600, height=800, unit="pt", source="text-layer", lines=lines)


def grid(rows: list[list[str | None]], top: float = 200) -> list[Line]:
    xs = (70, 250, 420)
    return [
        line(cell, x, top + r * 22, x + 12 * len(cell))
        for r, row in enumerate(rows)
        for cell, x in zip(row, xs, strict=True)
        if cell
    ]


def test_a_measurements_table_is_kept_as_rows_and_cells() -> None:
    text = line("右肺上叶见多发结节，详见下表。", 50, 150, 400)
    table = grid(
        [
            ["部位", "大小", "密度"],
            ["右肺上叶", "8mm", "磨玻璃"],
            ["左肾", None, "囊性"],
            ["肝右叶", "12mm", "实性"],
        ]
    )
    pages, paragraphs = layout([page([text, *table])])
    (block,) = [b for b in pages[0].blocks if b.kind == "table"]
    cells = [[c.text if c else None for c in row] for row in block.rows]
    assert cells == [
        ["部位", "大小", "密度"],
        ["右肺上叶", "8mm", "磨玻璃"],
        ["左肾", None, "囊性"],
        ["肝右叶", "12mm", "实性"],
    ]
    # the sentence above stays a text block, and each row is still a paragraph for the finders
    assert any(b.kind == "text" and "详见下表" in b.lines[0].text for b in pages[0].blocks)
    assert "右肺上叶 8mm 磨玻璃" in [p.text for p in paragraphs]
    assert sum(len(b.lines) for b in pages[0].blocks) == 1 + len(table)


def test_two_columns_of_text_are_not_a_table() -> None:
    left = [line(f"left column line {i} with words", 50, 100 + i * 14, 280) for i in range(5)]
    right = [line(f"right column line {i} with words", 320, 100 + i * 14, 550) for i in range(5)]
    pages, _ = layout([page(left + right)])
    assert all(b.kind == "text" for b in pages[0].blocks)


def test_one_row_of_fields_or_two_rows_are_not_a_table() -> None:
    fields = grid([["姓名：张某", "性别：男", "年龄：56岁"]])
    pages, _ = layout([page(fields)])
    assert all(b.kind == "text" for b in pages[0].blocks)
    pages, _ = layout([page(grid([["a", "b", "c"], ["d", "e", "f"]]))])
    assert all(b.kind == "text" for b in pages[0].blocks)
