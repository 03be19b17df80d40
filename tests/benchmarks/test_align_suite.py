"""The aligner benchmark's case generator stays consistent: its truth names instances its DICOM files hold."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pymupdf
import pytest
from pydicom import dcmread

ROOT = Path(__file__).resolve().parents[2]


def _suite() -> ModuleType:
    spec = importlib.util.spec_from_file_location("align_suite", ROOT / "benchmarks" / "align_suite.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    suite = _suite()
    root = tmp_path_factory.mktemp("suite")
    # Case 3 is a radiograph study with a decoy figure, case 4 a single-series thin CT ("IMG 45").
    return [suite.write_case(root, index, 7, tiny=True, scanned=False) for index in (3, 4)]


def _instances(folder: Path) -> dict[str, tuple[str, int, int]]:
    out = {}
    for path in folder.rglob("*.dcm"):
        ds = dcmread(path, stop_before_pixels=True)
        out[str(ds.SOPInstanceUID)] = (
            str(ds.SeriesInstanceUID),
            int(ds.SeriesNumber),
            int(ds.InstanceNumber),
        )
    return out


def test_truth_names_written_instances(cases: list[Path]) -> None:
    for folder in cases:
        truth = json.loads((folder / "truth.json").read_text())
        instances = _instances(folder / "dicom")
        assert truth["instances"] == len(instances)
        positives = [r for r in truth["references"] if r["sop_instance_uid"] is not None]
        assert positives, folder
        for ref in positives:
            series_uid, _series, number = instances[ref["sop_instance_uid"]]
            assert ref["series_instance_uid"] == series_uid
            for uid in ref["neighbours"]:
                assert instances[uid][0] == series_uid
                assert abs(instances[uid][2] - number) == 1
        for ref in truth["references"]:
            assert (
                ref["raw"] in truth["sentences"][ref["sentence"]]["text"]
                or "left" in ref["raw"]
                or "Figs." in ref["raw"]
            )


def test_negatives_have_no_truth(cases: list[Path]) -> None:
    tags = set()
    for folder in cases:
        truth = json.loads((folder / "truth.json").read_text())
        instances = _instances(folder / "dicom")
        numbers = {(s, i) for _u, s, i in instances.values()}
        for ref in truth["references"]:
            tags.update(ref["tags"])
            if "decoy" in ref["tags"] or "missing" in ref["tags"]:
                assert ref["sop_instance_uid"] is None and ref["neighbours"] == []
            if "missing:image" in ref["tags"]:
                series, number = ref["position"]
                assert (series, number) not in numbers
    assert "decoy" in tags
    assert "missing:image" in tags


def test_report_has_text_and_figures(cases: list[Path]) -> None:
    for folder in cases:
        truth = json.loads((folder / "truth.json").read_text())
        with pymupdf.open(folder / "report.pdf") as doc:
            text = "".join(page.get_text() for page in doc)
            images = sum(len(page.get_images()) for page in doc)
        assert images == len(truth["figures"]) >= 1
        for sentence in truth["sentences"]:
            if sentence["role"] == "body":
                # the text layer wraps lines; compare without whitespace
                assert "".join(sentence["text"].split())[:8] in "".join(text.split())
