"""Reading order, sentence joining and captions on typeset reports: one and two columns, text layer, OCR."""

from __future__ import annotations

import pytest
from report_fixtures import (
    CJK_FONT,
    ColumnBreak,
    Fig,
    Para,
    break_between,
    build_report,
    png_bytes,
    render_page,
)

from gateway.reading import Document, ReadingSettings, read_bytes

pytestmark = pytest.mark.skipif(not CJK_FONT.exists(), reason="fonts-noto-cjk not installed")

COLUMN = (595 - 2 * 56 - 28) / 2
FULL = 595 - 2 * 56
EN_BEFORE = (
    "FINDINGS: A solid nodule in the right upper lobe measures eight millimetres with smooth margins and no "
    "calcification, unchanged in size from the prior examination of last year, best seen on the axial "
    "image, see Se 3"
)
EN_AFTER = "Im 140. The mediastinum is normal. No pleural effusion is present and the bones are intact."
ZH_BEFORE = (
    "检查所见：右肺上叶见一实性结节，大小约八毫米，边缘光滑，未见钙化，与去年前片比较大小未见变化，请见序列3"
)
ZH_AFTER = "第45幅。纵隔未见异常，未见胸腔积液。双肺纹理清晰，气管及主支气管通畅，肺门不大。"
MORE_EN = "IMPRESSION: Stable small nodule in the right upper lobe. Follow-up in twelve months is suggested."
MORE_ZH = "诊断意见：右肺上叶小结节，较前无明显变化，建议十二个月后复查。"


def read(pdf: bytes, settings: ReadingSettings) -> Document:
    return read_bytes(pdf, settings=settings).document


def body(doc: Document) -> list[str]:
    return [p.text for p in doc.paragraphs if p.role == "body"]


def holding(doc: Document, text: str) -> list[str]:
    return [p.text for p in doc.paragraphs if text in p.text]


def test_two_columns_english_sentence_across_the_column_break(settings: ReadingSettings) -> None:
    text, lines = break_between(EN_BEFORE, EN_AFTER, COLUMN)
    pdf, _ = build_report([Para(text, break_after=lines), Para(MORE_EN)], columns=2, title="CT CHEST REPORT")
    doc = read(pdf, settings)
    (para,) = [p for p in doc.paragraphs if "see Se 3" in p.text]
    assert "see Se 3 Im 140. The mediastinum is normal." in para.text
    assert [(r.series, r.instance) for r in para.figure_refs] == [(3, 140)]
    assert para.section == "findings"
    assert doc.paragraphs[0].text == "CT CHEST REPORT"
    assert doc.paragraphs[-1].text == MORE_EN


def test_two_columns_chinese_sentence_across_the_column_break(settings: ReadingSettings) -> None:
    text, lines = break_between(ZH_BEFORE, ZH_AFTER, COLUMN)
    pdf, _ = build_report([Para(text, break_after=lines), Para(MORE_ZH)], columns=2)
    doc = read(pdf, settings)
    (para,) = holding(doc, "请见序列3第45幅。纵隔未见异常")
    refs = next(p.figure_refs for p in doc.paragraphs if p.text == para)
    assert [(r.series, r.instance) for r in refs] == [(3, 45)]
    assert body(doc)[-1] == MORE_ZH


def test_one_column_sentence_across_the_page_break(settings: ReadingSettings) -> None:
    text, lines = break_between(EN_BEFORE, EN_AFTER, FULL)
    pdf, _ = build_report([Para(text, break_after=lines), Para(MORE_EN)])
    doc = read(pdf, settings)
    (para,) = [p for p in doc.paragraphs if "see Se 3 Im 140" in p.text]
    assert para.page == 1
    assert [(r.series, r.instance) for r in para.figure_refs] == [(3, 140)]
    assert len(doc.pages) == 2


def test_caption_is_its_own_paragraph_and_the_sentence_around_the_figure_is_whole(
    settings: ReadingSettings,
) -> None:
    text, lines = break_between(EN_BEFORE.replace(", see Se 3", " of the series"), EN_AFTER, FULL)
    caption = "Figure 1. Axial CT, right upper lobe nodule"
    pdf, truths = build_report([Para(text, figure_after=(lines, Fig(caption, height=140)))])
    doc = read(pdf, settings)
    captions = [p for p in doc.paragraphs if p.role == "caption"]
    assert [p.text for p in captions] == [caption]
    assert [r.label for r in captions[0].figure_refs] == ["figure:1"]
    (whole,) = [p for p in doc.paragraphs if "of the series Im 140." in p.text]
    assert whole.role == "body"
    assert "Figure 1" not in whole.text
    assert whole.figure_refs == []  # the caption's "Figure 1" is not carried into the body sentence
    (figure,) = doc.figures
    assert (figure.label, figure.caption) == ("figure:1", caption)
    assert figure.bbox == pytest.approx(truths[0].bbox, abs=1)


def test_two_columns_bilingual_captions_and_a_figure_on_page_two(settings: ReadingSettings) -> None:
    text, lines = break_between(ZH_BEFORE, ZH_AFTER, COLUMN)
    filler = [Para("双肺纹理清晰，气管及主支气管通畅，肺门不大，心影大小形态正常。" * 3) for _ in range(9)]
    items = [
        Para(text, break_after=lines),
        *filler,
        Para("Figure 2 shows the comparison with the prior study. 双肺未见明显渗出。"),
        Fig("图1 右肺上叶结节", height=110),
        Para(MORE_ZH),
        Fig("Figure 2. Right upper lobe nodule 右肺上叶结节（箭头），前后对比", height=110, panels=2, seed=5),
        Para(MORE_EN),
    ]
    pdf, truths = build_report(items, columns=2, title="胸部CT报告 CT CHEST REPORT")
    doc = read(pdf, settings)
    assert {t.page for t in truths} == {2}
    captions = [(p.text, p.page) for p in doc.paragraphs if p.role == "caption"]
    assert captions == [
        ("图1 右肺上叶结节", 2),
        ("Figure 2. Right upper lobe nodule 右肺上叶结节（箭头），前后对比", 2),
    ]
    labels = [(f.label, f.page, f.caption) for f in doc.figures]
    assert labels == [("figure:1", 2, captions[0][0]), ("figure:2", 2, captions[1][0])]
    # A body line that starts with a label but stands away from any figure stays body text.
    (shows,) = [p for p in doc.paragraphs if p.text.startswith("Figure 2 shows")]
    assert shows.role == "body"
    # Captions never leak into body paragraphs.
    assert not any("右肺上叶结节（箭头" in t or t.startswith("图1") for t in body(doc))
    assert body(doc)[-1] == MORE_EN
    assert any("请见序列3第45幅。" in t for t in body(doc))


def test_columns_without_a_break_do_not_interleave(settings: ReadingSettings) -> None:
    left = [
        Para(f"Left paragraph {k}: the lungs are clear and the heart is normal in size.") for k in range(4)
    ]
    right = [Para(f"Right paragraph {k}: no effusion and no lymph node enlargement.") for k in range(4)]
    pdf, _ = build_report([*left, ColumnBreak(), *right], columns=2)
    texts = body(read(pdf, settings))
    assert texts == [p.text for p in left + right]


@pytest.mark.parametrize("columns", [1, 2])
def test_ocr_of_a_scanned_report_keeps_the_sentence_whole(
    columns: int, rapid_engine: object, settings: ReadingSettings
) -> None:
    """The same layouts scanned: OCR lines (no font sizes, spaces dropped) go through the same layout."""
    width = COLUMN if columns == 2 else FULL
    text, lines = break_between(EN_BEFORE, EN_AFTER, width)
    pdf, _ = build_report([Para(text, break_after=lines), Para(MORE_EN)], columns=columns)
    pages = [render_page(pdf, n, dpi=150, noise=4, jpeg=80) for n in range(1, columns % 2 + 2)]
    if columns == 1:
        import io

        from report_fixtures import Image as PILImage

        frames = [PILImage.fromarray(p) for p in pages]
        buf = io.BytesIO()
        frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
        data = buf.getvalue()
    else:
        data = png_bytes(pages[0])
    doc = read_bytes(data, settings=settings, engine=rapid_engine).document  # type: ignore[arg-type]
    refs = [(r.series, r.instance) for p in doc.paragraphs for r in p.figure_refs]
    assert refs == [(3, 140)]
    (para,) = [p for p in doc.paragraphs if p.figure_refs]
    compact = para.text.replace(" ", "")
    assert "seeSe3Im140.Themediastinumisnormal." in compact
