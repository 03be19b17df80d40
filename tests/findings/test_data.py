from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gateway.findings.data import DataSetError, StudyRecord, load_studies, split_studies
from gateway.findings.synthetic import generate, write_dataset
from gateway.findings.text import TextRules, Vocabulary, clean_r2gen, clean_seed, split_sentences

_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><meta type="rr"/><uId id="CXR{n}"/>
<MedlineCitation><Article><Abstract>
<AbstractText Label="COMPARISON">None.</AbstractText>
<AbstractText Label="INDICATION">XXXX-year-old male, chest pain.</AbstractText>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">Normal chest x-XXXX.</AbstractText>
</Abstract></Article></MedlineCitation>
{images}</eCitation>
"""


def _png(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)


def test_iu_xml_fixture(tmp_path: Path) -> None:
    (tmp_path / "ecgen-radiology").mkdir()
    studies = {1: "The cardiac silhouette and mediastinum size are within normal limits.", 2: "", 3: "Clear."}
    for n, findings in studies.items():
        ids = [f"CXR{n}_1_IM-000{n}-3001", f"CXR{n}_1_IM-000{n}-4001"]
        images = "".join(f'<parentImage id="{i}"><figureId>F1</figureId></parentImage>' for i in ids)
        (tmp_path / "ecgen-radiology" / f"{n}.xml").write_text(
            _XML.format(n=n, findings=findings, images=images)
        )
        for i in ids[: 2 if n != 3 else 0]:  # study 3 has no image files
            _png(tmp_path / "NLMCXR_png" / f"{i}.png")
    records = load_studies(tmp_path, "iu-xml")
    # Study 2 has no FINDINGS, study 3 no images: both are left out, as R2Gen does.
    assert [r.study_id for r in records] == ["CXR1"]
    assert records[0].findings.startswith("The cardiac silhouette")
    assert [p.path.name for p in records[0].images] == ["CXR1_1_IM-0001-3001.png", "CXR1_1_IM-0001-4001.png"]


def test_r2gen_fixture_keeps_its_split(tmp_path: Path) -> None:
    annotation: dict[str, list[dict[str, object]]] = {"train": [], "val": [], "test": []}
    for n, split in enumerate(["train", "train", "val", "test"]):
        folder = f"CXR{n}_IM-{n:04d}"
        _png(tmp_path / "images" / folder / "0.png")
        _png(tmp_path / "images" / folder / "1.png")
        annotation[split].append(
            {
                "id": folder,
                "report": f"Report {n}.",
                "split": split,
                "image_path": [f"{folder}/0.png", f"{folder}/1.png"],
            }
        )
    (tmp_path / "annotation.json").write_text(json.dumps(annotation))
    records = load_studies(tmp_path / "annotation.json", "r2gen")
    assert len(records) == 4 and records[0].images[0].view_position == "PA"
    split = split_studies(records, seed=1)
    assert split.train == ["CXR0_IM-0000", "CXR1_IM-0001"] and split.val == ["CXR2_IM-0002"]
    assert split.test == ["CXR3_IM-0003"]


def test_kaggle_fixture(tmp_path: Path) -> None:
    (tmp_path / "indiana_reports.csv").write_text(
        "uid,MeSH,Problems,image,indication,comparison,findings,impression\n"
        '1,normal,normal,Xray Chest PA and Lateral,"Positive TB test",None.,'
        '"The heart is normal, lungs clear.",'
        "Normal chest x-XXXX.\n"
        "2,normal,normal,Chest,,None.,,No acute disease.\n"
    )
    (tmp_path / "indiana_projections.csv").write_text(
        "uid,filename,projection\n1,1_IM-0001-3001.dcm.png,Lateral\n1,1_IM-0001-4001.dcm.png,Frontal\n"
        "2,2_IM-0652-1001.dcm.png,Frontal\n"
    )
    for name in ("1_IM-0001-3001.dcm.png", "1_IM-0001-4001.dcm.png", "2_IM-0652-1001.dcm.png"):
        _png(tmp_path / "images" / "images_normalized" / name)
    records = load_studies(tmp_path, "kaggle")
    assert [r.study_id for r in records] == ["1"]
    assert [(i.path.name, i.view_position) for i in records[0].images] == [
        ("1_IM-0001-3001.dcm.png", "LL"),
        ("1_IM-0001-4001.dcm.png", "PA"),
    ]


def test_archive_fixture(tmp_path: Path) -> None:
    _png(tmp_path / "s1" / "a.png")
    lines = [
        {
            "study_uid": "1.2.1",
            "patient_id": "P1",
            "findings": "Lungs clear.",
            "images": [{"path": "s1/a.png", "view_position": "PA", "sop_instance_uid": "1.2.1.1"}],
        },
        {"study_uid": "1.2.2", "patient_id": "P1", "findings": None, "images": []},
    ]
    (tmp_path / "archive.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    records = load_studies(tmp_path, "archive")
    assert len(records) == 1 and records[0].images[0].sop_instance_uid == "1.2.1.1"
    (tmp_path / "bad.jsonl").write_text('{"findings": "x"}\n')
    with pytest.raises(DataSetError, match=r"bad\.jsonl:1"):
        load_studies(tmp_path / "bad.jsonl", "archive")


def test_missing_data_set(tmp_path: Path) -> None:
    with pytest.raises(DataSetError):
        load_studies(tmp_path / "nope", "iu-xml")
    with pytest.raises(DataSetError):
        load_studies(tmp_path, "kaggle")


@pytest.mark.parametrize("fmt", ["iu-xml", "r2gen", "kaggle", "archive"])
def test_synthetic_set_round_trips_every_format(tmp_path: Path, fmt: str) -> None:
    studies = generate(12, seed=3, size=32)
    records = load_studies(write_dataset(studies, tmp_path, fmt), fmt)  # type: ignore[arg-type]
    assert sorted(r.findings for r in records) == sorted(s.findings for s in studies)
    assert all(len(r.images) == 2 for r in records)


def test_r2gen_cleaning() -> None:
    report = "1. The heart is normal in size.. 2. No pneumothorax; no effusion (left). XXXX opacity."
    assert (
        clean_r2gen(report)
        == "the heart is normal in size . no pneumothorax no effusion left . xxxx opacity ."
    )
    assert clean_r2gen("") == ""
    assert clean_seed("Heart normal, lungs clear.") == "heart normal , lungs clear ."
    assert split_sentences("the heart is normal . no effusion .") == ["the heart is normal", "no effusion"]


def test_vocabulary_min_count_and_truncation() -> None:
    texts = ["a b c .", "a b .", "a ."]
    vocab = Vocabulary.build(texts, min_count=2)
    assert vocab.tokens == ("<pad>", "<start>", "<end>", "<unk>", ".", "a", "b")
    ids = vocab.encode("a b c d .", max_tokens=3)
    assert ids == [5, 6, vocab.unk, vocab.end]
    assert vocab.decode([vocab.start, 5, 6, vocab.end, 5]) == "a b"
    assert TextRules.for_protocol("seed").min_count == 2 and TextRules.for_protocol("r2gen").min_count == 3


def test_split_groups_patients_and_is_reproducible() -> None:
    records = [StudyRecord(f"S{i}", f"P{i // 3}", "x", ()) for i in range(60)]
    split = split_studies(records, (0.7, 0.1, 0.2), seed=7)
    assert split == split_studies(records, (0.7, 0.1, 0.2), seed=7)
    assert split != split_studies(records, (0.7, 0.1, 0.2), seed=8)
    patient = {r.study_id: r.patient_id for r in records}
    parts = [{patient[s] for s in split.of(name)} for name in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert (len(split.train), len(split.val), len(split.test)) == (42, 6, 12)
