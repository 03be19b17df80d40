"""The aligner benchmark's scoring: exact vs. ±1 neighbour, false links on decoys, links that cite nothing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from gateway.align import Link

ROOT = Path(__file__).resolve().parents[2]


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("align_bench", ROOT / "benchmarks" / "align.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _runner()

MANIFEST: dict[str, Any] = {
    "case": "c",
    "sentences": [
        {"text": "右肺上叶见一结节，大小约5.2mm（见图1）。", "role": "body"},
        {"text": "A nodule of 6.1 mm in the lingula (Fig. 2).", "role": "body"},
        {"text": "Compared with the outside study, a focus of 7.3 mm (Figure 3).", "role": "body"},
        {"text": "A further small nodule of 8.4 mm is seen on Se 3 Im 45.", "role": "body"},
        {"text": "图1  病灶", "role": "caption"},
    ],
    "references": [
        {
            "sentence": 0,
            "raw": "见图1",
            "method": "figure",
            "figure": 1,
            "sop_instance_uid": "u10",
            "neighbours": ["u9", "u11"],
            "tags": ["fig:plain"],
        },
        {
            "sentence": 1,
            "raw": "Fig. 2",
            "method": "figure",
            "figure": 2,
            "sop_instance_uid": "u20",
            "neighbours": ["u19", "u21"],
            "tags": ["fig:crop40"],
        },
        {
            "sentence": 2,
            "raw": "Figure 3",
            "method": "figure",
            "figure": 3,
            "sop_instance_uid": None,
            "neighbours": [],
            "tags": ["decoy"],
        },
        {
            "sentence": 3,
            "raw": "Se 3 Im 45",
            "method": "explicit",
            "figure": None,
            "sop_instance_uid": "u45",
            "neighbours": ["u44", "u46"],
            "tags": ["form:se-im"],
        },
    ],
}


def _link(text: str, ref: str, uid: str | None, method: str = "figure", **detail: Any) -> Link:
    return Link(
        text=text,
        image_ref=ref,
        sop_instance_uid=uid,
        series_instance_uid=None,
        method=method,  # type: ignore[arg-type]
        confidence=0.9,
        resolved=uid is not None,
        detail=detail,
    )


def _score(links: list[Link], scanned: bool = False) -> Any:
    run = bench.Run("c", scanned, links, 0.0, 0.0, 0.0, 0, 0)
    return bench.score_run(run, MANIFEST)


def test_exact_neighbour_and_false_links() -> None:
    s = MANIFEST["sentences"]
    scored = _score(
        [
            _link(s[0]["text"], "见图1", "u10"),  # exact
            _link(
                s[1]["text"], "Fig. 2", "u20", neighbours=[{"sop_instance_uid": "u21", "score": 0.9}]
            ),  # tie
            _link(s[2]["text"], "Figure 3", "u7"),  # a decoy linked: false
            _link(s[3]["text"], "Se 3 Im 45", "u46", method="explicit"),  # the next slice: ±1 only
            _link(s[4]["text"], "图1", "u10"),  # from the caption: counted apart
            _link("The heart is normal.", "图9", "u3"),  # a sentence that cites nothing
        ]
    )
    by = {tuple(o.tags[:1]): o for o in scored.outcomes}
    assert by[("fig:plain",)].exact and by[("fig:plain",)].near
    assert not by[("fig:crop40",)].exact and by[("fig:crop40",)].near
    assert by[("decoy",)].links == 1
    assert not by[("form:se-im",)].exact and by[("form:se-im",)].near
    assert scored.caption_links == 1 and scored.caption_correct == 1
    assert len(scored.unattributed) == 1
    rows = {r.name: r for r in bench.table(scored.outcomes, scored.unattributed)}
    fig = rows["method:figure"]
    assert (fig.positives, fig.exact, fig.near) == (2, 1, 2)
    assert fig.false_links == 2  # the decoy's link and the one on a sentence citing nothing
    assert fig.precision(False) == 1 / 4 and fig.precision(True) == 2 / 4
    assert rows["figure decoy"].false_rate() == 1.0


def test_ocr_text_and_merged_sentences_find_their_reference() -> None:
    s = MANIFEST["sentences"]
    merged = s[0]["text"] + s[1]["text"]  # two sentences the layout failed to split
    ocr = "A nodu1e of 6.1 mm in the lingu1a (Fig.2)"  # OCR noise
    scored = _score([_link(merged, "Fig. 2", "u20"), _link(ocr, "Fig.2", "u20")], scanned=True)
    plain, crop = scored.outcomes[0], scored.outcomes[1]
    assert plain.links == 0 and crop.links == 2 and crop.exact
    assert all("copy:scanned" in o.tags for o in scored.outcomes)


def test_reader_corrections_are_scored_as_labelled_links(tmp_path: Path) -> None:
    """The review page's ground-truth export as extra cases: a chosen instance is a positive, a removal a
    negative."""
    import json

    import pytest

    def at(text: str, uid: str | None, paragraph: int, sentence: int) -> Link:
        return Link(text, "Se 2 Im 5", uid, "1.2", "explicit", 0.9, uid is not None, paragraph, sentence)

    run = bench.Run(
        "reader:1.2",
        False,
        [
            at("Nodule (Se 2 Im 5).", "1.2.5", 0, 0),
            at("Effusion.", "1.2.9", 1, 0),
            at("Mass.", "1.2.7", 2, 0),
        ],
        0.0,
        0.0,
        0.0,
        0,
        0,
    )
    export = [
        {"source": "report", "paragraph": 0, "sentence": 0, "text": "Nodule (Se 2 Im 5).", "was": "1.2.5",
         "sop_instance_uid": "1.2.6", "removed": False},
        {"source": "report", "paragraph": 1, "sentence": 0, "text": "Effusion.", "was": "1.2.9",
         "sop_instance_uid": None, "removed": True},
        {"source": "report", "paragraph": 2, "sentence": 0, "text": "Mass.", "was": None,
         "sop_instance_uid": "1.2.7", "removed": False},
        {"source": "draft", "paragraph": None, "sentence": 0, "text": "x", "was": "1",
         "sop_instance_uid": "2", "removed": False},
    ]  # fmt: skip
    outcomes = bench.score_corrections(run, export)
    assert [(o.positive, o.exact, o.links, o.links_exact) for o in outcomes] == [
        (True, False, 1, 0),  # the aligner still names 1.2.5, the reader chose 1.2.6
        (False, False, 1, 0),  # the removed link is made again: a false link
        (True, True, 1, 1),  # the link the reader added is found
    ]
    [row] = [r for r in bench.table(outcomes, []) if r.name == "method:reader-corrections"]
    assert (row.positives, row.negatives, row.false_refs) == (2, 1, 1)

    (tmp_path / "dicom").mkdir()
    (tmp_path / "report.pdf").write_bytes(b"%PDF")
    (tmp_path / "ground-truth-1.2.json").write_text(
        json.dumps({"study_instance_uid": "1.2", "links": export})
    )
    manifest = bench.corrections_manifest(tmp_path)
    assert manifest["case"] == "reader:1.2" and manifest["report"] == "report.pdf"
    (tmp_path / "ground-truth-1.2.json").write_text("{}")
    with pytest.raises(SystemExit, match="not a review-page"):
        bench.corrections_manifest(tmp_path)
