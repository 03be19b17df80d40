"""The aligner: explicit positions, figures by image similarity, KOS, anatomy cues, drafts, sentences."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from gateway.align import AlignOptions, InstanceInfo, Rendering, align
from gateway.align.figures import FigureIndex
from gateway.align.sentences import split_sentences
from gateway.align.windows import alternative_windows
from gateway.imaging import GreyValues

SIZE = 160


def _volume(n: int, seed: int) -> list[np.ndarray]:
    """Slices of a smooth random 'body' in HU: neighbours look alike, as adjacent CT slices do."""
    r = np.random.default_rng(seed)
    axis = np.arange(SIZE)
    xx, yy = np.meshgrid(axis, axis)
    body = (((xx - SIZE / 2) / (SIZE * 0.45)) ** 2 + ((yy - SIZE / 2) / (SIZE * 0.35)) ** 2 < 1).astype(float)
    blobs = [
        (
            r.uniform(25, SIZE - 25),
            r.uniform(25, SIZE - 25),
            r.uniform(0, n),
            r.uniform(2, 9),
            r.uniform(-300, 400),
        )
        for _ in range(60)
    ]
    out = []
    for z in range(n):
        img = -1000 + body * 1040
        for x, y, bz, s, a in blobs:
            w = a * np.exp(-(((z - bz) / 2.5) ** 2) / 2)
            img = img + w * np.outer(
                np.exp(-(((axis - y) / s) ** 2) / 2), np.exp(-(((axis - x) / s) ** 2) / 2)
            )
        out.append(img + r.normal(0, 6, img.shape))
    return out


def _window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    return np.clip((hu - (center - width / 2)) / width * 255, 0, 255).astype(np.uint8)


def _screenshot(hu: np.ndarray) -> np.ndarray:
    """A report figure: another window, cropped, rescaled, annotated, JPEG quality 50."""
    img = _window(hu, 60, 300)[12:140, 20:150]
    img = cv2.resize(img, (260, 256), interpolation=cv2.INTER_LINEAR)
    cv2.putText(img, "W:300 L:60", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 255, 1)
    cv2.arrowedLine(img, (130, 128), (170, 150), 255, 2)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="module")
def study() -> dict[str, Any]:
    slices = _volume(24, seed=3)
    lung = _volume(6, seed=4)
    infos: list[InstanceInfo] = []
    images: dict[str, np.ndarray] = {}
    for i, hu in enumerate(slices, start=1):
        uid = f"1.2.9.2.{i}"
        infos.append(
            InstanceInfo(
                uid,
                "1.2.840.10008.5.1.4.1.1.2",
                "1.2.9.2",
                2,
                i,
                "CT",
                "CHEST",
                None,
                None,
                "Mediastinum",
                None,
                40.0,
                400.0,
                SIZE,
                SIZE,
            )
        )
        images[uid] = _window(hu, 40, 400)
    for i, hu in enumerate(lung, start=1):
        uid = f"1.2.9.3.{i}"
        infos.append(
            InstanceInfo(
                uid,
                "1.2.840.10008.5.1.4.1.1.2",
                "1.2.9.3",
                3,
                i,
                "CT",
                "CHEST",
                None,
                None,
                "Lung 1.25mm",
                None,
                -600.0,
                1500.0,
                SIZE,
                SIZE,
            )
        )
        images[uid] = _window(hu, -600, 1500)
    return {"infos": infos, "images": images, "slices": slices}


def _para(
    index: int, text: str, refs: list[dict[str, Any]], section: str | None = "findings"
) -> dict[str, Any]:
    return {
        "index": index,
        "text": text,
        "page": 1,
        "bbox": [0, 0, 1, 1],
        "section": section,
        "figure_refs": refs,
    }


def _pos(text: str, raw: str, series: int, instance: int) -> dict[str, Any]:
    start = text.index(raw)
    return {
        "kind": "position",
        "raw": raw,
        "label": None,
        "number": None,
        "series": series,
        "instance": instance,
        "start": start,
        "end": start + len(raw),
    }


def _fig(text: str, raw: str, number: int) -> dict[str, Any]:
    start = text.index(raw)
    return {
        "kind": "figure",
        "raw": raw,
        "label": f"figure:{number}",
        "number": number,
        "series": None,
        "instance": None,
        "start": start,
        "end": start + len(raw),
    }


def _document(paragraphs: list[dict[str, Any]], figures: int = 1) -> dict[str, Any]:
    return {
        "schema_version": "1.0",
        "source_kind": "pdf",
        "engine": {"name": "test", "version": "1"},
        "status": None,
        "pages": [],
        "paragraphs": paragraphs,
        "warnings": [],
        "figures": [
            {
                "label": f"figure:{n}",
                "number": n,
                "page": 1,
                "bbox": [0, 0, 1, 1],
                "caption": None,
                "artifact": f"figure-{n}.png",
                "media_type": "image/png",
                "sha256": "",
                "width": 1,
                "height": 1,
            }
            for n in range(1, figures + 1)
        ],
    }


def test_explicit_positions_resolve_and_unknown_ones_stay_unresolved(study: dict[str, Any]) -> None:
    t0 = "A 3.5 cm nodule in the right upper lobe (Se 2 Im 5). Also see series 3, image 2."
    t1 = "右肺门影增大 (2:7)；另见 Se 9 Im 99。"
    doc = _document(
        [
            _para(0, t0, [_pos(t0, "Se 2 Im 5", 2, 5), _pos(t0, "series 3, image 2", 3, 2)]),
            _para(1, t1, [_pos(t1, "(2:7)", 2, 7), _pos(t1, "Se 9 Im 99", 9, 99)]),
        ],
        figures=0,
    )
    result = align(doc, study["infos"])
    by_ref = {link.image_ref: link for link in result.links if link.image_ref}
    assert by_ref["Se 2 Im 5"].sop_instance_uid == "1.2.9.2.5"
    assert by_ref["Se 2 Im 5"].method == "explicit" and by_ref["Se 2 Im 5"].confidence == 1.0
    assert by_ref["Se 2 Im 5"].text == "A 3.5 cm nodule in the right upper lobe (Se 2 Im 5)."
    assert by_ref["series 3, image 2"].sop_instance_uid == "1.2.9.3.2"
    assert by_ref["(2:7)"].series_instance_uid == "1.2.9.2"
    unresolved = by_ref["Se 9 Im 99"]
    assert not unresolved.resolved and unresolved.sop_instance_uid is None and unresolved.confidence == 0.0


def test_duplicate_position_is_not_guessed(study: dict[str, Any]) -> None:
    infos = [*study["infos"], InstanceInfo("1.2.9.4.5", "1.2.840.10008.5.1.4.1.1.2", "1.2.9.4", 2, 5)]
    text = "Nodule (Se 2 Im 5)."
    result = align(_document([_para(0, text, [_pos(text, "Se 2 Im 5", 2, 5)])], 0), infos)
    assert [link.resolved for link in result.links] == [False]


def test_figure_resolves_through_image_similarity(study: dict[str, Any]) -> None:
    target = 13
    figure = _screenshot(study["slices"][target - 1])
    text = "右肺上叶见不规则结节，边界欠清（图1）。"
    doc = _document([_para(0, text, [_fig(text, "图1", 1)])])
    calls: list[int] = []

    def render(instances: Any) -> dict[str, np.ndarray]:
        calls.append(len(instances))
        return {i.sop_instance_uid: study["images"][i.sop_instance_uid] for i in instances}

    result = align(
        doc,
        study["infos"],
        figure_images={"figure-1.png": figure},
        instance_images=render,
        options=AlignOptions(anatomy_cues=False),
    )
    [link] = result.links
    assert link.method == "figure" and link.resolved
    assert link.sop_instance_uid == f"1.2.9.2.{target}"
    assert 0.5 < link.confidence <= 0.99
    assert calls == [len(study["infos"])]


def test_figure_without_image_match_uses_the_key_object_selection(study: dict[str, Any]) -> None:
    text = "Figure 2 shows the nodule."
    doc = _document([_para(0, text, [_fig(text, "Figure 2", 2)])], figures=0)
    result = align(doc, study["infos"], kos=["1.2.9.2.3", "1.2.9.2.8"])
    [link] = result.links
    assert (link.method, link.sop_instance_uid, link.resolved) == ("kos", "1.2.9.2.8", True)
    nothing = align(doc, study["infos"])
    assert not nothing.links[0].resolved and nothing.links[0].detail["reason"]


def test_unrelated_figure_is_not_linked(study: dict[str, Any]) -> None:
    noise = (np.random.default_rng(0).random((200, 200)) * 255).astype(np.uint8)
    text = "见图1。"
    doc = _document([_para(0, text, [_fig(text, "图1", 1)])])
    result = align(
        doc,
        study["infos"],
        figure_images={"figure-1.png": noise},
        instance_images=lambda xs: {i.sop_instance_uid: study["images"][i.sop_instance_uid] for i in xs},
    )
    assert not result.links[0].resolved


def test_anatomy_and_window_cues_can_be_switched_off(study: dict[str, Any]) -> None:
    text = "肺窗示右肺上叶磨玻璃影。纵隔窗未见肿大淋巴结。"
    doc = _document([_para(0, text, [])], figures=0)
    on = align(doc, study["infos"])
    series = {link.sentence: link.series_instance_uid for link in on.links}
    assert series == {0: "1.2.9.3", 1: "1.2.9.2"}
    assert all(link.method == "anatomy" and link.confidence < 0.5 for link in on.links)
    off = align(doc, study["infos"], options=AlignOptions(anatomy_cues=False))
    assert off.links == () and len(off.sentences) == 2


def test_drafted_findings_link_to_their_instance(study: dict[str, Any]) -> None:
    draft = {
        "model_name": "m",
        "model_version": "2",
        "sentences": [{"text": "Nodule.", "sop_instance_uid": "1.2.9.2.4"}],
    }
    result = align(_document([], 0), study["infos"], draft=draft)
    [link] = result.links
    assert (link.method, link.source, link.sop_instance_uid, link.series_instance_uid) == (
        "drafted",
        "draft",
        "1.2.9.2.4",
        "1.2.9.2",
    )


def test_every_sentence_is_kept() -> None:
    doc = _document(
        [_para(0, "Lungs are clear. Heart normal.", []), _para(1, "无异常。", [], "impression")], 0
    )
    result = align(doc, [])
    assert [s.text for s in result.sentences] == ["Lungs are clear.", "Heart normal.", "无异常。"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A 3.5 cm mass (Se 3 Im 45). Stable.", ["A 3.5 cm mass (Se 3 Im 45).", "Stable."]),
        ("见图1。纵隔窗未见异常；心影不大！", ["见图1。", "纵隔窗未见异常；", "心影不大！"]),
        ("See Fig. 2 and Figure 3. Done", ["See Fig. 2 and Figure 3.", "Done"]),
    ],
)
def test_sentence_split(text: str, expected: list[str]) -> None:
    assert [s.text for s in split_sentences(text)] == expected


def test_figure_index_reports_runner_up(study: dict[str, Any]) -> None:
    index = FigureIndex({u: study["images"][u] for u in list(study["images"])[:10]})
    match = index.match(study["images"]["1.2.9.2.4"])
    assert match.sop_instance_uid == "1.2.9.2.4" and match.score > 0.95 and match.runner_up is not None


def test_figure_under_another_window_finds_its_source_not_an_averaged_neighbour() -> None:
    """A thin-slice series shown in the lung window and a thick series averaged from it in the mediastinal
    window; the figure is a thin slice cropped and resized under the mediastinal window. Compared only under
    each instance's own window, the thick slice looks more like the figure than the true source does."""
    thin = _volume(16, seed=7)
    thick = [
        cv2.GaussianBlur((thin[2 * j] + thin[2 * j + 1]) / 2, (5, 5), 1.2) for j in range(len(thin) // 2)
    ]
    infos: list[InstanceInfo] = []
    renderings: dict[str, Rendering] = {}
    for number, (series, slices, window, spacing) in enumerate(
        [("1.2.9.5", thin, (-600.0, 1500.0), 1.0), ("1.2.9.6", thick, (40.0, 400.0), 2.0)], start=5
    ):
        for i, hu in enumerate(slices, start=1):
            # Thick slice j averages thin slices 2j-1 and 2j: it sits between them.
            z = i * spacing - (0.5 if spacing == 2.0 else 0.0)
            uid = f"{series}.{i}"
            infos.append(
                InstanceInfo(
                    uid,
                    "1.2.840.10008.5.1.4.1.1.2",
                    series,
                    number,
                    i,
                    "CT",
                    "CHEST",
                    window_center=window[0],
                    window_width=window[1],
                    rows=SIZE,
                    columns=SIZE,
                    image_position=(0.0, 0.0, z),
                    image_orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
                )
            )
            renderings[uid] = Rendering(_window(hu, *window), GreyValues(hu.astype(np.float32)))
    source = 10  # thin instance 10 is half of thick instance 5
    figure = cv2.resize(_window(thin[source - 1], 40, 400)[20:120, 10:130], (240, 200))
    text = "右肺上叶结节（图1）。"
    doc = _document([_para(0, text, [_fig(text, "图1", 1)])])
    result = align(
        doc,
        infos,
        figure_images={"figure-1.png": figure},
        instance_images=lambda xs: {i.sop_instance_uid: renderings[i.sop_instance_uid] for i in xs},
        options=AlignOptions(anatomy_cues=False),
    )
    [link] = result.links
    assert (link.method, link.resolved, link.sop_instance_uid) == ("figure", True, f"1.2.9.5.{source}")
    assert "window" in link.detail  # its own (lung) window would not have done


def test_alternative_windows_come_from_the_study_and_the_presets() -> None:
    ct = [
        InstanceInfo("a", "x", "s1", modality="CT", window_center=-600, window_width=1500),
        InstanceInfo("b", "x", "s2", modality="CT", window_center=50, window_width=350),
        InstanceInfo("c", "x", "s3", modality="DX", window_center=2048, window_width=4096),
    ]
    windows = alternative_windows(ct)
    assert windows["a"][0] == (50, 350) and (-600, 1500) not in windows["a"]
    assert {(40, 400), (400, 1800), (-600, 1500)} <= set(windows["b"])
    assert "c" not in windows  # no other DX window in the study, and the presets are for CT
