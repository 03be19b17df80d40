"""The invented sample study: valid Part-10 files, a truthful manifest, and a report that cites its images."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pydicom
import pymupdf
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "samples" / "make_sample_study.py"


def _load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample_study", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("demo")
    manifest = _load_module().build_sample_study(out, seed=0)
    return out, manifest


def _by_file(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["file"]: f for f in manifest["files"]}


def test_manifest_written_and_returned(study: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = study
    assert json.loads((out / "manifest.json").read_text("utf-8")) == manifest
    assert manifest["patient_id"] == "DEMO-0001"
    assert manifest["invented"] is True
    assert sorted(p.name for p in out.glob("*.dcm")) == sorted(_by_file(manifest))


def test_every_file_rereads_and_matches_manifest(study: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = study
    sops = set()
    for name, entry in _by_file(manifest).items():
        ds = pydicom.dcmread(out / name)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.StudyInstanceUID == manifest["study_instance_uid"]
        assert ds.PatientID == manifest["patient_id"]
        assert ds.AccessionNumber == manifest["accession_number"]
        assert ds.SOPInstanceUID == entry["sop_instance_uid"]
        assert ds.SOPClassUID == entry["sop_class_uid"]
        assert ds.SeriesInstanceUID == entry["series_instance_uid"]
        assert ds.SeriesNumber == entry["series_number"]
        assert ds.InstanceNumber == entry["instance_number"]
        assert ds.Modality == entry["modality"]
        sops.add(entry["sop_instance_uid"])
    assert len(sops) == len(manifest["files"])


def test_series_layout(study: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = study
    series: dict[int, list[pydicom.Dataset]] = {}
    for name in _by_file(manifest):
        ds = pydicom.dcmread(out / name)
        series.setdefault(int(ds.SeriesNumber), []).append(ds)
    assert sorted(series) == [2, 3, 4, 90, 91]
    lung = sorted(series[2], key=lambda d: d.InstanceNumber)
    assert [d.InstanceNumber for d in lung] == list(range(1, len(lung) + 1))
    assert len(lung) >= 10
    assert {(d.Modality, d.BodyPartExamined, d.WindowCenter, d.WindowWidth) for d in lung} == {
        ("CT", "CHEST", -600, 1500)
    }
    assert {(d.WindowCenter, d.WindowWidth) for d in series[3]} == {(40, 400)}
    assert sorted(d.ViewPosition for d in series[4]) == ["LL", "PA"]
    assert {d.Modality for d in series[4]} == {"DX"}
    assert series[90][0].MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert series[91][0].SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.11"


def test_ct_slices_differ(study: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = study
    names = sorted(f["file"] for f in manifest["files"] if f["series_number"] == 2)
    arrays = [pydicom.dcmread(out / n).pixel_array.astype(np.float32) for n in names]
    assert arrays[0].shape == (256, 256)
    assert arrays[0].dtype == np.float32 and pydicom.dcmread(out / names[0]).PixelRepresentation == 1
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            assert np.abs(arrays[i] - arrays[j]).mean() > 5.0, (names[i], names[j])


def test_links_point_at_the_right_images(study: tuple[Path, dict[str, Any]]) -> None:
    _, manifest = study
    by_sop = {f["sop_instance_uid"]: f for f in manifest["files"]}
    links = manifest["links"]
    assert set(links) == {"Se 2 Im 5", "figure:1", "figure:2"}
    cited = by_sop[links["Se 2 Im 5"]]
    assert (cited["series_number"], cited["instance_number"]) == (2, 5)
    fig1 = by_sop[links["figure:1"]]
    assert (fig1["modality"], fig1["series_number"]) == ("CT", 2)
    fig2 = by_sop[links["figure:2"]]
    assert (fig2["modality"], fig2.get("view_position")) == ("DX", "PA")


def test_pdf_report_text_and_figures(study: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = study
    ds = pydicom.dcmread(out / manifest["report"]["pdf"])
    data = bytes(ds.EncapsulatedDocument)[: int(ds.EncapsulatedDocumentLength)]
    assert data.startswith(b"%PDF-")
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        text = "".join(page.get_text() for page in doc)
        images = [img for page in doc for img in page.get_images(full=True)]
    for needle in (
        "Se 2 Im 5",
        "图1",
        "Figure 2",
        "影像所见",
        "FINDINGS",
        "诊断意见",
        "IMPRESSION",
        "（图1）",
    ):
        assert needle in text, needle
    assert len(images) >= 2


def test_sr_cites_series_2_instance_5(study: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = study
    ds = pydicom.dcmread(out / manifest["report"]["sr"])
    headings = [item.ConceptNameCodeSequence[0].CodeMeaning for item in ds.ContentSequence]
    assert headings == ["Findings", "Impressions"]
    refs = [
        img.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for text in ds.ContentSequence[0].ContentSequence
        for img in text.get("ContentSequence", [])
    ]
    assert refs == [manifest["links"]["Se 2 Im 5"]]
    assert "Se 2 Im 5" in " ".join(t.TextValue for t in ds.ContentSequence[0].ContentSequence)


def test_seed_makes_uids_deterministic(study: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    _, manifest = study
    module = _load_module()
    again = module.build_sample_study(tmp_path / "same", seed=0)
    other = module.build_sample_study(tmp_path / "other", seed=1)
    assert again["files"] == manifest["files"]
    assert again["links"] == manifest["links"]
    assert other["study_instance_uid"] != manifest["study_instance_uid"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.dcmtk
@pytest.mark.skipif(shutil.which("storescp") is None, reason="DCMTK is not installed")
def test_dcmtk_accepts_every_file(study: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, manifest = study
    env = {**os.environ, "TCP_NODELAY": "1"}
    files = sorted(str(p) for p in out.glob("*.dcm"))
    for f in files:
        dump = subprocess.run(["dcmdump", "-q", f], env=env, capture_output=True, check=False)
        assert dump.returncode == 0 and not dump.stderr.strip(), (f, dump.stderr)
    received = tmp_path / "received"
    received.mkdir()
    port = _free_port()
    scp = subprocess.Popen(
        ["storescp", "-aet", "ANY", "--output-directory", str(received), str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            echo = subprocess.run(
                ["echoscu", "-aec", "ANY", "127.0.0.1", str(port)], env=env, capture_output=True, check=False
            )
            if echo.returncode == 0:
                break
            assert time.monotonic() < deadline, "storescp did not start"
            time.sleep(0.1)
        sent = subprocess.run(
            ["storescu", "-aec", "ANY", "127.0.0.1", str(port), *files],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
    finally:
        scp.terminate()
        scp.wait(timeout=10)
    got = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in received.iterdir()}
    assert got == {f["sop_instance_uid"] for f in manifest["files"]}
