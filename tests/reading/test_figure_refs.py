from __future__ import annotations

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
        ("Image 5 shows", "figure:5"),
        ("IMG 6", "figure:6"),
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
