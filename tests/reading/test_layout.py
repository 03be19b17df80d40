from __future__ import annotations

from gateway.reading.document import Line
from gateway.reading.layout import PageText, layout


def line(text: str, x0: float, y0: float, x1: float, size: float = 10, bold: bool = False) -> Line:
    return Line(text=text, bbox=(x0, y0, x1, y0 + size * 1.2), confidence=1.0, font_size=size, bold=bold)


def page(number: int, lines: list[Line]) -> PageText:
    return PageText(number=number, width=600, height=800, unit="pt", source="text-layer", lines=lines)


def texts(pages: list[PageText]) -> list[str]:
    return [p.text for p in layout(pages)[1]]


def test_two_columns_read_left_then_right() -> None:
    left = [line(f"left column line {i} with words", 50, 100 + i * 14, 280) for i in range(5)]
    right = [line(f"right column line {i} with words", 320, 100 + i * 14, 550) for i in range(5)]
    title = line("A TITLE SPANNING THE PAGE", 50, 60, 550, size=14, bold=True)
    out = texts([page(1, [title, *right, *left])])
    assert out[0] == "A TITLE SPANNING THE PAGE"
    joined = " ".join(out)
    assert joined.index("left column line 4") < joined.index("right column line 0")


def test_table_cells_are_not_columns() -> None:
    rows = [
        line(text, x, 100 + r * 14, x + 40)
        for r in range(5)
        for text, x in ((f"名称{r}", 50), (f"{r}mm", 330))
    ]
    out = texts([page(1, rows)])
    assert out[:2] == ["名称0 0mm", "名称1 1mm"]


def test_running_headers_and_page_numbers_are_removed() -> None:
    pages = [
        page(
            n,
            [
                line("XX医院放射科报告", 50, 20, 300),
                line(f"正文第{n}页内容。", 50, 200, 300),
                line(f"第 {n} 页", 280, 770, 330),
            ],
        )
        for n in (1, 2)
    ]
    built, paragraphs = layout(pages)
    assert [p.text for p in paragraphs] == ["正文第1页内容。", "正文第2页内容。"]
    roles = {ln.role for b in built[0].blocks for ln in b.lines}
    assert roles == {"body", "header", "footer"}


def test_paragraph_split_by_indent_and_short_last_line() -> None:
    lines = [
        line("The first paragraph runs across the full width of", 50, 100, 550),
        line("the column and ends here.", 50, 114, 300),
        line("Second paragraph starts flush left and runs the", 50, 128, 550),
        line("whole width again.", 50, 142, 200),
        line("An indented third paragraph starts here and is", 80, 156, 550),
        line("continued on this line.", 50, 170, 250),
    ]
    out = texts([page(1, lines)])
    assert out == [
        "The first paragraph runs across the full width of the column and ends here.",
        "Second paragraph starts flush left and runs the whole width again.",
        "An indented third paragraph starts here and is continued on this line.",
    ]


def test_paragraph_broken_across_pages_is_merged() -> None:
    first = page(
        1,
        [
            line("检查所见：", 50, 100, 110, bold=True),
            line("右肺上叶见一结节影，大小约八毫米，边界清晰，周围未见明显", 50, 120, 550),
        ],
    )
    second = page(
        2, [line("渗出影，建议随访复查。", 50, 100, 260), line("诊断意见：", 50, 130, 110, bold=True)]
    )
    paragraphs = layout([first, second])[1]
    assert [p.text for p in paragraphs] == [
        "检查所见：",
        "右肺上叶见一结节影，大小约八毫米，边界清晰，周围未见明显渗出影，建议随访复查。",
        "诊断意见：",
    ]
    assert paragraphs[1].page == 1
    assert [p.section for p in paragraphs] == ["findings", "findings", "impression"]
    assert [p.heading for p in paragraphs] == [True, False, True]


def test_sections_and_refs_in_paragraphs() -> None:
    lines = [line("IMPRESSION: nodule, see Fig. 2 and (3:45).", 50, 100, 400)]
    (para,) = layout([page(1, lines)])[1]
    assert para.section == "impression"
    assert not para.heading
    assert [r.label for r in para.figure_refs] == ["figure:2", None]
    assert para.figure_refs[1].series == 3


def test_empty_page_is_a_page_without_lines() -> None:
    built, paragraphs = layout([page(1, []), page(2, [line("text on page two.", 50, 100, 200)])])
    assert built[0].blocks == []
    assert [p.page for p in paragraphs] == [2]


def test_ocr_variants_of_a_running_header_are_removed() -> None:
    pages = [
        page(1, [line("XX市人民医院放射科初步报告", 50, 20, 300), line("第一页正文内容。", 50, 200, 300)]),
        page(2, [line("X×市人民医院放射科初步报告", 50, 22, 300), line("第二页正文内容。", 50, 200, 300)]),
    ]
    assert texts(pages) == ["第一页正文内容。", "第二页正文内容。"]


def test_a_title_closes_the_previous_section() -> None:
    first = page(1, [line("IMPRESSION:", 50, 100, 130, bold=True), line("Stable nodule.", 50, 120, 200)])
    body = [line(f"Field {i}: value.", 50, 140 + 30 * i, 150) for i in range(3)]
    second = page(2, [line("CT CHEST REPORT", 50, 100, 250, size=16, bold=True), *body])
    paragraphs = layout([first, second])[1]
    assert [p.section for p in paragraphs] == ["impression", "impression", None, None, None, None]
