"""Figures as real reports carry them: thin slices, twins, crops, rotations, overlays, montages, decoys."""

from __future__ import annotations

from typing import Any

import align_phantom as phantom
import cv2
import numpy as np
import pytest
from align_phantom import MEDIASTINUM

from gateway.align import AlignOptions, InstanceInfo, Link, align
from gateway.align.geometry import Geometry
from gateway.align.panels import split_panels

OPTIONS = AlignOptions(anatomy_cues=False)


def _ref(
    text: str, raw: str, number: int, *, panel: str | None = None, label: str = "figure"
) -> dict[str, Any]:
    start = text.index(raw)
    return {
        "kind": "figure",
        "raw": raw,
        "label": f"{label}:{number}",
        "number": number,
        "panel": panel,
        "start": start,
        "end": start + len(raw),
    }


def _doc(
    sentences: list[tuple[str, list[dict[str, Any]]]], figures: int, captions: dict[int, str] | None = None
) -> dict[str, Any]:
    return {
        "paragraphs": [
            {
                "index": i,
                "text": text,
                "page": 1,
                "bbox": [0, 0, 1, 1],
                "section": "findings",
                "figure_refs": refs,
            }
            for i, (text, refs) in enumerate(sentences)
        ],
        "figures": [
            {
                "label": f"figure:{n}",
                "number": n,
                "page": 1,
                "bbox": [0, 0, 1, 1],
                "caption": (captions or {}).get(n),
                "artifact": f"figure-{n}.png",
                "media_type": "image/png",
                "sha256": "",
                "width": 1,
                "height": 1,
            }
            for n in range(1, figures + 1)
        ],
    }


def _link_for(study: phantom.Study, figure: np.ndarray, text: str = "结节，见图1。", **kwargs: Any) -> Link:
    doc = _doc([(text, [_ref(text, "图1", 1)])], 1, kwargs.pop("captions", None))
    result = align(
        doc,
        study.infos,
        figure_images={"figure-1.png": figure},
        instance_images=study.images,
        options=OPTIONS,
    )
    [link] = result.links
    return link


def _accepts(link: Link, uid: str) -> bool:
    """Exact, or the link names ``uid`` among the neighbours it ties with."""
    named = {n["sop_instance_uid"] for n in link.detail.get("neighbours", [])}
    return link.resolved and (link.sop_instance_uid == uid or uid in named)


@pytest.fixture(scope="module")
def lungs() -> phantom.Study:
    return phantom.study(48, seed=11)


@pytest.mark.parametrize("source", [9, 24, 40])
def test_thin_slice_figure_links_its_source_not_refused_for_its_neighbours(
    lungs: phantom.Study, source: int
) -> None:
    figure = phantom.screenshot(lungs.slices[source - 1], crop=(0.15, 0.1, 0.85, 0.9))
    link = _link_for(lungs, figure)
    assert link.resolved, link.detail
    assert link.sop_instance_uid == lungs.uid(2, source), link.detail
    assert link.detail.get("series_choice")  # a mediastinal twin exists, and the lung series fits better


def test_adjacent_slices_that_still_tie_are_named_with_a_lower_confidence() -> None:
    # Slices 0.1 mm apart are the same image: the link names the tie instead of refusing it.
    study = phantom.study(24, seed=5, twins=False)
    hu = study.slices[11]
    for info in study.infos[10:13]:  # make 11, 12 and 13 one slice
        study.renderings[info.sop_instance_uid] = study.renderings[study.uid(2, 12)]
    link = _link_for(study, phantom.screenshot(hu))
    assert link.resolved and link.sop_instance_uid in {study.uid(2, n) for n in (11, 12, 13)}
    assert {n["instance_number"] for n in link.detail["neighbours"]} <= {11, 12, 13}
    assert link.confidence < 0.8


def test_a_window_word_picks_the_reconstruction(lungs: phantom.Study) -> None:
    # The mediastinal reconstruction (series 3) of slice 20, and the sentence says so.
    blurred = cv2.GaussianBlur(lungs.slices[19], (0, 0), 1.2)
    figure = phantom.screenshot(blurred, shown=MEDIASTINUM, crop=(0.1, 0.1, 0.9, 0.9))
    link = _link_for(lungs, figure, text="纵隔窗见淋巴结，见图1。")
    assert _accepts(link, lungs.uid(3, 20)), link.detail
    assert "window cue" in link.detail["series_choice"]


@pytest.mark.parametrize(
    "variation",
    [
        {"crop": (0.3, 0.25, 0.72, 0.67)},  # 42 % of the width
        {"rotate": 4.0},
        {"rotate": -3.0, "crop": (0.15, 0.12, 0.85, 0.88)},
        {"colour": True},
        {"colour": True, "crop": (0.25, 0.2, 0.8, 0.75)},
    ],
)
def test_crops_rotations_and_colour_overlays(lungs: phantom.Study, variation: dict[str, Any]) -> None:
    figure = phantom.screenshot(lungs.slices[29], **variation)
    link = _link_for(lungs, figure)
    assert _accepts(link, lungs.uid(2, 30)), link.detail


def test_colour_overlay_is_masked_not_matched() -> None:
    from gateway.align.figures import figure_grey

    figure = phantom.screenshot(np.zeros((64, 64)) - 1000, colour=True)
    grey, mask = figure_grey(figure)
    assert grey.shape == mask.shape and 0.005 < (mask == 0).mean() < 0.3
    assert grey[mask == 0].mean() < 100  # the (bright yellow, red, green) overlays were filled in


@pytest.mark.parametrize("seed", [101, 202, 303])
def test_a_figure_from_another_patient_stays_unresolved(lungs: phantom.Study, seed: int) -> None:
    other = phantom.chest(30, seed)
    link = _link_for(lungs, phantom.screenshot(other[15]))
    assert not link.resolved, link.detail
    assert "reason" in link.detail


def test_words_about_another_study_ask_for_a_closer_fit(lungs: phantom.Study) -> None:
    figure = phantom.screenshot(lungs.slices[14])
    plain = _link_for(lungs, figure)
    foreign = _link_for(lungs, figure, text="与外院2024年CT对比，见图1。")
    assert plain.resolved and foreign.detail["foreign_words"]
    assert not foreign.resolved and "another study" in foreign.detail["reason"]
    verify = AlignOptions(anatomy_cues=False, figure_foreign="verify")
    text = "与外院2024年CT对比，见图1。"
    kept = align(
        _doc([(text, [_ref(text, "图1", 1)])], 1),
        lungs.infos,
        figure_images={"figure-1.png": figure},
        instance_images=lungs.images,
        options=verify,
    )
    assert kept.links[0].resolved  # a close fit is linked when the site asks to verify instead
    strict = AlignOptions(anatomy_cues=False, figure_foreign="verify", figure_foreign_fidelity=0.9999)
    text = "与外院2024年CT对比，见图1。"
    result = align(
        _doc([(text, [_ref(text, "图1", 1)])], 1),
        lungs.infos,
        figure_images={"figure-1.png": figure},
        instance_images=lungs.images,
        options=strict,
    )
    assert not result.links[0].resolved


def _montage(panels: list[np.ndarray], columns: int, gutter: int = 6) -> np.ndarray:
    h = max(p.shape[0] for p in panels)
    w = max(p.shape[1] for p in panels)
    rows = (len(panels) + columns - 1) // columns
    out = np.zeros((rows * h + (rows - 1) * gutter, columns * w + (columns - 1) * gutter, 3), np.uint8)
    for k, p in enumerate(panels):
        r, c = divmod(k, columns)
        out[
            r * (h + gutter) : r * (h + gutter) + p.shape[0], c * (w + gutter) : c * (w + gutter) + p.shape[1]
        ] = p
    return out


def test_montage_panels_are_split_in_reading_order(lungs: phantom.Study) -> None:
    shots = [phantom.screenshot(lungs.slices[n], width=220) for n in (5, 15, 25, 35)]
    assert len(split_panels(_montage(shots[:2], 2))) == 2
    boxes = split_panels(_montage(shots, 2))
    assert len(boxes) == 4
    assert boxes[0][0] < boxes[1][0] and boxes[0][1] < boxes[2][1]
    for single in shots:
        assert split_panels(single) == []


def test_a_panel_reference_links_its_panel_and_a_figure_reference_links_all(lungs: phantom.Study) -> None:
    montage = _montage([phantom.screenshot(lungs.slices[n - 1], width=220) for n in (12, 36)], 2)
    text = "右肺结节（图2A），左肺结节（图2B）；比较见图2。"
    refs = [_ref(text, "图2A", 2, panel="A"), _ref(text, "图2B", 2, panel="B"), _ref(text, "见图2", 2)]
    refs[2]["raw"] = "图2"
    doc = _doc([(text, refs)], 2)
    result = align(
        doc,
        lungs.infos,
        figure_images={"figure-2.png": montage},
        instance_images=lungs.images,
        options=OPTIONS,
    )
    a, b, *whole = result.links
    assert _accepts(a, lungs.uid(2, 12)) and a.detail["panel"] == "A", a.detail
    assert _accepts(b, lungs.uid(2, 36)) and b.detail["panel"] == "B", b.detail
    assert [link.detail["panel"] for link in whole] == ["A", "B"]


def test_image_number_means_an_instance_of_the_only_image_series() -> None:
    study = phantom.study(12, seed=3, twins=False)
    text = "Nodule on IMG 7."
    doc = _doc([(text, [_ref(text, "IMG 7", 7, label="image")])], 0)
    [link] = align(doc, study.infos, options=OPTIONS).links
    assert (link.method, link.sop_instance_uid) == ("explicit", study.uid(2, 7))
    assert link.detail["assumed"]
    two = phantom.study(12, seed=3)
    [link] = align(doc, two.infos, options=OPTIONS).links
    assert not link.resolved and "2 image series" in link.detail["reason"]
    text = "Nodule on IMG 70."
    doc = _doc([(text, [_ref(text, "IMG 70", 70, label="image")])], 0)
    [link] = align(doc, study.infos, options=OPTIONS).links
    assert not link.resolved  # no instance 70: a reference to nothing stays unresolved


def test_captions_do_not_link_and_references_are_capped(lungs: phantom.Study) -> None:
    caption = "图1 右肺上叶结节"
    doc = _doc([(caption, [_ref(caption, "图1", 1)])], 1)
    doc["paragraphs"][0]["role"] = "caption"
    result = align(doc, lungs.infos, figure_images={}, instance_images=lungs.images, options=OPTIONS)
    assert result.links == () and len(result.sentences) == 1
    text = "Fig 1 " * 100
    refs = [
        {"kind": "figure", "raw": "Fig 1", "label": "figure:1", "number": 1, "start": 6 * k, "end": 6 * k + 5}
        for k in range(100)
    ]
    capped = align(_doc([(text, refs)], 1), lungs.infos, options=AlignOptions(max_refs_per_sentence=5))
    assert len(capped.links) == 6 and "over the limit" in capped.links[-1].detail["reason"]


def test_geometry_orders_slices_along_the_normal_and_finds_twins() -> None:
    def info(uid: str, series: str, z: float, number: int) -> InstanceInfo:
        return InstanceInfo(
            uid,
            phantom.CT,
            series,
            instance_number=number,
            image_position=(10.0, 20.0, z),
            image_orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        )

    # Instance Numbers run against the positions in series a; b is a thicker reconstruction.
    insts = [info(f"a{k}", "a", 1.25 * k, 10 - k) for k in range(8)] + [
        info(f"b{k}", "b", 2.5 * k, k) for k in range(4)
    ]
    geometry = Geometry(insts)
    assert geometry.around("a3", 1) == ["a2", "a3", "a4"]
    assert geometry.distance("a1", "a5") == 4 and geometry.distance("a1", "b1") is None
    assert geometry.twins("a2") == ["b1"] and geometry.twins("a0") == ["b0"]
    assert not geometry.same_slices("a2", "b1") and geometry.same_slices("a2", "a3")
    assert geometry.radius("a3", 5.0) == 4
    no_geometry = Geometry([InstanceInfo(f"c{k}", phantom.CT, "c", instance_number=k) for k in (3, 1, 2)])
    assert no_geometry.around("c2", 1) == ["c1", "c2", "c3"] and no_geometry.twins("c2") == []


def test_a_report_repeating_one_reference_costs_time_and_memory_linear_in_its_size(
    lungs: phantom.Study,
) -> None:
    import time
    import tracemalloc

    text = "Fig 1 " * 26_667  # 160 KB: a hostile SR that once took 9.86 GB to align
    refs = [
        {"kind": "figure", "raw": "Fig 1", "label": "figure:1", "number": 1, "start": 6 * k, "end": 6 * k + 5}
        for k in range(26_667)
    ]
    tracemalloc.start()
    t = time.perf_counter()
    result = align(_doc([(text, refs)], 0), lungs.infos, options=OPTIONS)
    elapsed = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(result.links) == OPTIONS.max_refs_per_sentence + 1
    assert elapsed < 5.0 and peak < 64 * 1024**2
