from __future__ import annotations

import time

import pytest

from gateway.reading import find_figure_refs


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("见图1。", "figure:1"),
        ("附图2示结节", "figure:2"),
        ("见图 3", "figure:3"),
        ("see Figure 3.", "figure:3"),
        ("(Fig. 4)", "figure:4"),
        ("Image 5 shows", "image:5"),
        ("IMG 6", "image:6"),
        ("IMG 45", "image:45"),
        ("lmage 9", "image:9"),  # OCR reads a capital I as l
        ("图 2", "figure:2"),
        ("附图1", "figure:1"),
        ("Fig. 3", "figure:3"),
        ("见图３", "figure:3"),
        ("seeIMG45", "image:45"),
        ("见图１２", "figure:12"),  # full-width digits from OCR
        ("seeFig.7", "figure:7"),  # spaces dropped by OCR
    ],
)
def test_figure_labels(text: str, label: str) -> None:
    refs = find_figure_refs(text)
    assert [r.label for r in refs] == [label]
    ref = refs[0]
    assert ref.kind == "figure"
    assert text[ref.start : ref.end] == ref.raw


@pytest.mark.parametrize(
    ("text", "series", "instance"),
    [
        ("nodule Se 3 Im 45.", 3, 45),
        ("结节（Se3Im45）", 3, 45),
        ("Sé3Im45", 3, 45),  # an accent misread by OCR
        ("series 4, image 112", 4, 112),
        ("lesion (3:45)", 3, 45),
        ("lesion（３：４５）", 3, 45),
        ("(image 45 of series 3)", 3, 45),
        ("(image45ofseries3)", 3, 45),
        ("Se 3 Im 45", 3, 45),
        ("Se3/Im45", 3, 45),
        ("S3 I45", 3, 45),
        ("S3:I45", 3, 45),
        ("S3I45", 3, 45),  # OCR dropped the space
        ("S３ I４５", 3, 45),  # full-width digits
        ("series 3, image 45", 3, 45),
        ("Series 3 / Image 45", 3, 45),
        ("image 45 of series 3", 3, 45),
        ("see image 45 in series 3.", 3, 45),
        ("(3:45)", 3, 45),
        ("序列3 第45幅", 3, 45),
        ("序列３第４５层", 3, 45),
        ("第3序列第45层", 3, 45),
        ("第 3 序列 第 45 幅", 3, 45),
    ],
)
def test_positions(text: str, series: int, instance: int) -> None:
    refs = find_figure_refs(text)
    assert len(refs) == 1, refs
    ref = refs[0]
    assert (ref.kind, ref.series, ref.instance, ref.label) == ("position", series, instance, None)
    assert text[ref.start : ref.end] == ref.raw


def test_no_false_references() -> None:
    assert find_figure_refs("图像清晰，未见异常。Imaging is normal; prefigure 3 is not a label.") == []


def test_several_in_text_order() -> None:
    text = "见图1及Se 3 Im 45，另见Figure 2。"
    refs = find_figure_refs(text)
    assert [(r.kind, r.label, r.series) for r in refs] == [
        ("figure", "figure:1", None),
        ("position", None, 3),
        ("figure", "figure:2", None),
    ]
    assert [r.start for r in refs] == sorted(r.start for r in refs)


@pytest.mark.parametrize(
    ("text", "position"),
    [("see Se31m45.", (3, 45)), ("se3lm45", (3, 45)), ("Se 12 Im 5", (12, 5)), ("Se311m45", (31, 45))],
)
def test_ocr_reading_capital_i_as_one_inside_a_position(text: str, position: tuple[int, int]) -> None:
    (ref,) = find_figure_refs(text)
    assert (ref.series, ref.instance) == position


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("图 2A", [("figure:2", "A")]),
        ("图2A", [("figure:2", "A")]),
        ("Figure 2B", [("figure:2", "B")]),
        ("Fig. 3 (left)", [("figure:3", "A")]),
        ("Fig. 3 (right panel)", [("figure:3", "B")]),
        ("图3（右）", [("figure:3", "B")]),
        ("Figure 3, left and right", [("figure:3", "A"), ("figure:3", "B")]),
        ("Figure 3, top and bottom.", [("figure:3", "A"), ("figure:3", "B")]),
        ("Figure 4 (upper left)", [("figure:4", "A")]),
        ("Figure 4 (upper-right)", [("figure:4", "B")]),
        ("Figure 4 (lower left)", [("figure:4", "C")]),
        ("图4（右下）", [("figure:4", "D")]),
        ("图2A、2B示结节", [("figure:2", "A"), ("figure:2", "B")]),
        ("seeFigure2,leftandright.", [("figure:2", "A"), ("figure:2", "B")]),  # OCR dropped the spaces
        ("见图２（左）", [("figure:2", "A")]),  # full-width digits and brackets
    ],
)
def test_panels(text: str, expected: list[tuple[str, str]]) -> None:
    refs = find_figure_refs(text)
    assert [(r.label, r.panel) for r in refs] == expected
    assert all(text[r.start : r.end] == r.raw for r in refs)


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("Figs. 2–3", ["figure:2", "figure:3"]),
        ("Figs. 2-4.", ["figure:2", "figure:3", "figure:4"]),
        ("Figures 2 and 3 show the nodule", ["figure:2", "figure:3"]),
        ("Figures 2, 3 and 5", ["figure:2", "figure:3", "figure:5"]),
        ("图2、3", ["figure:2", "figure:3"]),
        ("见图２、３。", ["figure:2", "figure:3"]),
        ("图2至4", ["figure:2", "figure:3", "figure:4"]),
        ("Images 4 and 5", ["image:4", "image:5"]),
    ],
)
def test_several_numbers_after_one_label(text: str, labels: list[str]) -> None:
    refs = find_figure_refs(text)
    assert [r.label for r in refs] == labels
    assert all(r.kind == "figure" and text[r.start : r.end] == r.raw for r in refs)


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("见图2及3个结节", ["figure:2"]),  # 3 counts nodules
        ("Figures 2, 3 mm nodule", ["figure:2"]),
        ("Figures 2 and 3 months later", ["figure:2"]),
        ("Figure 2 and 3 nodules", ["figure:2"]),  # a singular label does not take a list
        ("Figs. 5-2", ["figure:5"]),  # descending: not a range
        ("Figs. 1-400", ["figure:1"]),  # too long to be a range of figures
        ("Figure 3, left lower lobe", ["figure:3"]),  # an anatomical side, not a panel
        ("图3左肺", ["figure:3"]),
    ],
)
def test_continuations_that_are_not_references(text: str, labels: list[str]) -> None:
    refs = find_figure_refs(text)
    assert [r.label for r in refs] == labels
    assert all(r.panel is None for r in refs)


@pytest.mark.parametrize(
    "text",
    [
        "右肺上叶S1段见结节",  # lung segments
        "左肺上叶S1+2段",
        "I-131 治疗后",
        "IMAGES ARE DIAGNOSTIC",
        "fig tree",
        "a Figure-of-eight artefact",
        "检查日期 2024-03-05，复查 2024/3/5",
        "scanned at 3:45 pm",
        "scanned (3:45 pm)",
        "at (14:30:05)",
        "T1/T2 hyperintense, T1 I45 is not a position",
        "S1 segment, I think",
        "Images were reviewed",
        "series of images",
        "seen in 3 series, 45 images",
        "figure it out",
    ],
)
def test_prose_gives_no_references(text: str) -> None:
    assert find_figure_refs(text) == []


def test_limit_keeps_the_first_in_text_order() -> None:
    from gateway.reading.figure_refs import figure_refs

    text = "Se 1 Im 1, " + "Figure 2, " * 10 + "Se 3 Im 4"
    refs, truncated = figure_refs(text, limit=3)
    assert truncated
    assert [(r.kind, r.number, r.series) for r in refs] == [
        ("position", None, 1),
        ("figure", 2, None),
        ("figure", 2, None),
    ]
    assert figure_refs(text, limit=12) == (find_figure_refs(text), False)


def test_linear_in_text_length() -> None:
    """Finding is linear: four times the text costs about four times the time, not sixteen."""

    import gc

    def best(n: int) -> float:
        text = "Fig 1 " * n
        times = []
        for _ in range(5):
            start = time.perf_counter()
            assert len(find_figure_refs(text)) == n
            times.append(time.perf_counter() - start)
        return min(times)

    find_figure_refs("Fig 1")
    gc.disable()
    try:
        small, large = best(4_000), best(16_000)
    finally:
        gc.enable()
    assert large < 8 * small, (small, large)  # quadratic would be 16 times
