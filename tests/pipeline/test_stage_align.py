"""Stage ``align`` on a real index: reads the read document and figure artifacts, stores links.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy.orm import Session, sessionmaker

from gateway.index.models import Instance, Patient, Series, Study
from gateway.pipeline.stage import StageContext
from gateway.pipeline.stages import align as align_stage
from gateway.settings import Settings

STUDY = "1.2.826.0.1.3680043.10.999.7"
CT = "1.2.840.10008.5.1.4.1.1.2"


def _hu(i: int) -> np.ndarray:
    r = np.random.default_rng(100 + i)
    img = cv2.GaussianBlur(r.normal(0, 300, (96, 96)), (0, 0), 4) * 8
    return np.clip(img, -1000, 1500)


def _write(path: Path, uid: str, series_uid: str, number: int) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CT, uid
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 96, 96, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.InstanceNumber = number
    ds.PixelData = _hu(number).astype(np.int16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def seed(sessions: sessionmaker[Session], tmp_path: Path, n: int = 8) -> Study:
    with sessions.begin() as session:
        patient = Patient(patient_id="PAT-7", issuer="", name="Invented^Person", sex="M")
        session.add(patient)
        session.flush()
        study = Study(
            study_instance_uid=STUDY,
            patient_fk=patient.id,
            accession_number="ACC-7",
            study_date="20260105",
            state="processing",
            version=1,
        )
        session.add(study)
        session.flush()
        series = Series(
            series_instance_uid=f"{STUDY}.2",
            study_fk=study.id,
            modality="CT",
            series_number=2,
            body_part="CHEST",
            series_description="Mediastinum",
        )
        session.add(series)
        session.flush()
        for i in range(1, n + 1):
            path = tmp_path / "dcm" / f"{i}.dcm"
            _write(path, f"{STUDY}.2.{i}", series.series_instance_uid, i)
            session.add(
                Instance(
                    sop_instance_uid=f"{STUDY}.2.{i}",
                    series_fk=series.id,
                    study_fk=study.id,
                    sop_class_uid=CT,
                    transfer_syntax_uid=ExplicitVRLittleEndian,
                    instance_number=i,
                    rows=96,
                    columns=96,
                    window_center=40,
                    window_width=400,
                    path=str(path),
                    size=1,
                    digest="0" * 64,
                )
            )
    with sessions() as session:
        return session.query(Study).filter_by(study_instance_uid=STUDY).one()


def read_document(text: str, status: str | None = None) -> dict[str, Any]:
    refs = []
    if "Se 2 Im 5" in text:
        s = text.index("Se 2 Im 5")
        refs.append(
            {
                "kind": "position",
                "raw": "Se 2 Im 5",
                "label": None,
                "number": None,
                "series": 2,
                "instance": 5,
                "start": s,
                "end": s + 9,
            }
        )
    if "图1" in text:
        s = text.index("图1")
        refs.append(
            {
                "kind": "figure",
                "raw": "图1",
                "label": "figure:1",
                "number": 1,
                "series": None,
                "instance": None,
                "start": s,
                "end": s + 2,
            }
        )
    return {
        "schema_version": "1.0",
        "source_kind": "pdf",
        "engine": {"name": "rapidocr", "version": "1.3"},
        "status": status,
        "pages": [],
        "warnings": [],
        "paragraphs": [
            {
                "index": 0,
                "text": text,
                "page": 1,
                "bbox": [0, 0, 1, 1],
                "section": "findings",
                "figure_refs": refs,
            }
        ],
        "figures": [
            {
                "label": "figure:1",
                "number": 1,
                "page": 1,
                "bbox": [0, 0, 1, 1],
                "caption": None,
                "artifact": "figure-1.png",
                "media_type": "image/png",
                "sha256": "",
                "width": 200,
                "height": 180,
            }
        ],
    }


def put_read_report(
    settings: Settings, sessions: sessionmaker[Session], study: Study, text: str, status: str | None = None
) -> None:
    """What read_report leaves behind: the document and the figure (instance 3, re-windowed and cropped)."""
    ctx = StageContext(settings=settings, sessions=sessions, study_version=study.version, stage="read_report")
    ctx.put_document(
        study,
        key="document.json",
        kind="document",
        media_type="application/json",
        content=read_document(text, status),
    )
    hu = _hu(3)[8:90, 4:88]
    fig = np.clip((hu + 100) / 500 * 255, 0, 255).astype(np.uint8)
    fig = cv2.resize(fig, (200, 180))
    cv2.putText(fig, "L", (5, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 2)
    ok, jpeg = cv2.imencode(".jpg", fig, [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert ok
    ctx.put_document(study, key="figure-1.png", kind="figure", media_type="image/jpeg", data=jpeg.tobytes())


def test_align_stage_stores_links(
    sessions: sessionmaker[Session], tmp_path: Path, settings: Settings
) -> None:
    study = seed(sessions, tmp_path)
    put_read_report(settings, sessions, study, "右肺上叶见结节（Se 2 Im 5）。另见图1。纵隔窗未见异常。")
    ctx = StageContext(settings=settings, sessions=sessions, study_version=study.version, stage="align")
    summary = align_stage.run(ctx, study)
    assert summary["sentences"] == 3 and summary["unresolved"] == 0
    [doc] = ctx.documents(study, stage="align", kind="links")
    links = {link["image_ref"]: link for link in (doc.content or {})["links"]}
    assert links["Se 2 Im 5"]["sop_instance_uid"] == f"{STUDY}.2.5"
    assert links["图1"]["sop_instance_uid"] == f"{STUDY}.2.3" and links["图1"]["method"] == "figure"
    for link in links.values():
        assert {
            "text",
            "image_ref",
            "sop_instance_uid",
            "series_instance_uid",
            "method",
            "confidence",
        } <= set(link)


def test_extract_keeps_matching_features_and_align_reads_no_pixel_data(
    sessions: sessionmaker[Session], tmp_path: Path, settings: Settings
) -> None:
    from gateway.align.features import unpack
    from gateway.pipeline.stages import extract as extract_stage

    study = seed(sessions, tmp_path)
    ctx = StageContext(settings=settings, sessions=sessions, study_version=study.version, stage="extract")
    summary = extract_stage.run(ctx, study)
    assert summary["features"] == 8 and summary["features_reused"] == 0
    [doc] = ctx.documents(study, stage="extract", kind="features")
    features = unpack(Path(str(doc.path)))
    assert sorted(features) == sorted(f"{STUDY}.2.{i}" for i in range(1, 9))
    one = features[f"{STUDY}.2.3"]
    assert one.values is not None and max(one.values.shape) <= 128 and one.image.dtype == np.uint8
    # The pixel data is gone: align works from the features alone.
    for path in (tmp_path / "dcm").glob("*.dcm"):
        path.write_bytes(b"not dicom any more")
    put_read_report(settings, sessions, study, "另见图1。")
    summary = align_stage.run(
        StageContext(settings=settings, sessions=sessions, study_version=study.version, stage="align"), study
    )
    assert summary["unresolved"] == 0 and summary["by_method"] == {"figure": 1}


def test_a_new_study_version_reuses_the_features_of_unchanged_instances(
    sessions: sessionmaker[Session], tmp_path: Path, settings: Settings
) -> None:
    from gateway.pipeline.stages import extract as extract_stage

    study = seed(sessions, tmp_path)
    extract_stage.run(StageContext(settings, sessions, study.version, "extract"), study)
    with sessions.begin() as session:
        row = session.get(Study, study.id)
        assert row is not None
        row.version = 2
        changed = session.query(Instance).filter_by(sop_instance_uid=f"{STUDY}.2.4").one()
        changed.digest = "1" * 64  # re-sent with other content
    with sessions() as session:
        study = session.get(Study, study.id)
        assert study is not None
    summary = extract_stage.run(StageContext(settings, sessions, 2, "extract"), study)
    assert (summary["features"], summary["features_reused"]) == (8, 7)


def test_features_round_trip_without_pickles() -> None:
    from gateway.align.features import InstanceFeatures, pack, unpack

    grey = InstanceFeatures(
        "1.2.3",
        "d1",
        np.zeros((64, 96), np.uint8),
        np.ones((64, 96), np.float16),
        True,
        (0.0, 1.0, 2.5),
        None,
    )
    colour = InstanceFeatures("1.2.4", "d2", np.zeros((32, 32, 3), np.uint8), None, False, None, None)
    back = unpack(pack([grey, colour]))
    assert back["1.2.3"].position == (0.0, 1.0, 2.5) and back["1.2.3"].orientation is None
    assert back["1.2.3"].monochrome1 and back["1.2.3"].values is not None
    assert back["1.2.4"].values is None and back["1.2.4"].image.shape == (32, 32, 3)
    assert back["1.2.3"].rendering().values is not None
