"""IU X-Ray and the gateway's archive as lists of studies, and their split.

Four formats are read; each yields :class:`StudyRecord` values holding the raw FINDINGS text and image paths:

``iu-xml``
    OpenI's ``ecgen-radiology/*.xml``: ``<AbstractText Label="FINDINGS">`` and one
    ``<parentImage id="CXR1_1_IM-0001-3001">`` per image, whose file is ``<id>.png`` in the PNG folder.
``r2gen``
    R2Gen's ``annotation.json``:
    ``{"train": [{"id", "report", "image_path": [..], "split"}], "val": [..], "test": [..]}``,
    image paths relative to an ``images`` folder beside it. Its split is kept.
``kaggle``
    ``indiana_reports.csv`` (uid, MeSH, Problems, image, indication, comparison, findings, impression) with
    ``indiana_projections.csv`` (uid, filename, projection ``Frontal``/``Lateral``).
``archive``
    The gateway's own export, ``archive.jsonl``; one JSON object per line::

        {"study_uid": "1.2.3", "patient_id": "P1", "findings": "The lungs are clear.",
         "images": [{"path": "1.2.3/1.2.3.4.dcm", "view_position": "PA", "sop_instance_uid": "1.2.3.4"}]}

    ``path`` is relative to the manifest's folder (or absolute); ``view_position`` and ``sop_instance_uid``
    may be null. ``gateway findings export`` also writes ``split`` (fixed per patient; when every study has
    one it is kept), ``context`` (``age``, ``sex``, ``indication``), ``language`` and ``target``.

The clinical context a model trained with ``--context`` reads is the archive's ``context``, OpenI's INDICATION
and Kaggle's ``indication`` column (IU X-Ray masks ages and has no sex field).

Studies without FINDINGS text or without an image are left out, as R2Gen does.
"""

from __future__ import annotations

import csv
import json
import random
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gateway.errors import GatewayError

__all__ = [
    "FORMATS",
    "DataFormat",
    "DataSetError",
    "ImageRef",
    "Split",
    "StudyRecord",
    "load_studies",
    "split_studies",
]

DataFormat = Literal["iu-xml", "r2gen", "kaggle", "archive"]
FORMATS: tuple[DataFormat, ...] = ("iu-xml", "r2gen", "kaggle", "archive")
SplitName = Literal["train", "val", "test"]
_IMAGE_DIRS = ("", "NLMCXR_png", "png", "images", "images/images_normalized", "images_normalized")


class DataSetError(GatewayError):
    """A training or evaluation data set is missing or malformed."""


@dataclass(frozen=True, slots=True)
class ImageRef:
    path: Path
    view_position: str | None = None
    sop_instance_uid: str | None = None


@dataclass(frozen=True, slots=True)
class StudyRecord:
    study_id: str
    patient_id: str
    findings: str
    images: tuple[ImageRef, ...]
    split: SplitName | None = None  # a split the source prescribes
    context: dict[str, object] | None = None  # clinical context: age, sex, indication (archive exports)


@dataclass(frozen=True, slots=True)
class Split:
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)

    def of(self, name: str) -> list[str]:
        if name not in ("train", "val", "test"):
            raise ValueError(f"no split {name!r}")
        ids: list[str] = getattr(self, name)
        return ids

    def to_json(self) -> dict[str, list[str]]:
        return {"train": self.train, "val": self.val, "test": self.test}


def _find_image(roots: Sequence[Path], name: str) -> Path | None:
    for root in roots:
        for sub in _IMAGE_DIRS:
            candidate = root / sub / name
            if candidate.is_file():
                return candidate
    return None


def load_iu_xml(path: Path) -> list[StudyRecord]:
    """OpenI: ``path`` is ``ecgen-radiology`` itself or a folder holding it and the PNG folder."""
    xml_dir = path / "ecgen-radiology" if (path / "ecgen-radiology").is_dir() else path
    files = sorted(xml_dir.glob("*.xml"), key=lambda p: (len(p.stem), p.stem))
    if not files:
        raise DataSetError(f"no OpenI XML reports under {path}")
    roots = [path, xml_dir.parent]
    studies = []
    for file in files:
        try:
            root = ET.parse(file).getroot()  # noqa: S314 - see the import
        except ET.ParseError as exc:
            raise DataSetError(f"{file}: {exc}") from exc
        findings, indication = "", ""
        for node in root.iter("AbstractText"):
            if (node.get("Label") or "").upper() == "FINDINGS":
                findings = "".join(node.itertext()).strip()
            elif (node.get("Label") or "").upper() == "INDICATION":
                indication = "".join(node.itertext()).strip()
        uid_node = root.find(".//uId")
        study_id = uid_node.get("id", file.stem) if uid_node is not None else file.stem
        images = []
        for node in root.iter("parentImage"):
            image_id = node.get("id")
            found = _find_image(roots, f"{image_id}.png") if image_id else None
            if found is not None:
                images.append(ImageRef(found))
        if findings and images:
            # OpenI has no patient identifier; each report is its own patient.
            context: dict[str, object] | None = {"indication": indication} if indication else None
            sid = study_id or file.stem
            studies.append(StudyRecord(sid, sid, findings, tuple(images), context=context))
    return studies


def load_r2gen(path: Path) -> list[StudyRecord]:
    """``path`` is ``annotation.json`` or its folder; images lie in ``images/`` beside it (or beside it)."""
    file = path / "annotation.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataSetError(f"{file}: {exc}") from exc
    roots = [file.parent / "images", file.parent]
    studies = []
    for split_name in ("train", "val", "test"):
        for item in data.get(split_name, []):
            images = []
            for rel in item.get("image_path", []):
                found = next((r / rel for r in roots if (r / rel).is_file()), None)
                if found is not None:
                    images.append(ImageRef(found))
            report = str(item.get("report", "")).strip()
            study_id = str(item["id"])
            if report and images:
                # R2Gen lists the frontal image first.
                if len(images) >= 2:
                    images = [ImageRef(images[0].path, "PA"), ImageRef(images[1].path, "LL"), *images[2:]]
                studies.append(StudyRecord(study_id, study_id, report, tuple(images), split_name))
    return studies


def load_kaggle(path: Path) -> list[StudyRecord]:
    """``path`` holds ``indiana_reports.csv``, ``indiana_projections.csv`` and the image folder."""
    reports, projections = path / "indiana_reports.csv", path / "indiana_projections.csv"
    if not reports.is_file() or not projections.is_file():
        raise DataSetError(f"{path} lacks indiana_reports.csv or indiana_projections.csv")
    views: dict[str, list[tuple[str, str]]] = defaultdict(list)
    with projections.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            views[row["uid"]].append((row["filename"], row.get("projection", "")))
    studies = []
    with reports.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            uid, findings = row["uid"], (row.get("findings") or "").strip()
            images = []
            for name, projection in views.get(uid, []):
                found = _find_image([path], name)
                position = {"frontal": "PA", "lateral": "LL"}.get(projection.strip().lower())
                if found is not None:
                    images.append(ImageRef(found, position))
            indication = (row.get("indication") or "").strip()
            if findings and images:
                context = {"indication": indication} if indication else None
                studies.append(StudyRecord(uid, uid, findings, tuple(images), context=context))
    return studies


def load_archive(path: Path) -> list[StudyRecord]:
    """The gateway's ``archive.jsonl`` (see the module docstring)."""
    file = path / "archive.jsonl" if path.is_dir() else path
    studies = []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataSetError(f"{file}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            images = tuple(
                ImageRef(file.parent / img["path"], img.get("view_position"), img.get("sop_instance_uid"))
                for img in item["images"]
            )
            split = item.get("split")
            if split is not None and split not in ("train", "val", "test"):
                raise DataSetError(f"{file}:{number}: split must be train, val or test, not {split!r}")
            context = item.get("context")
            record = StudyRecord(
                str(item["study_uid"]),
                str(item.get("patient_id") or item["study_uid"]),
                str(item.get("findings") or "").strip(),
                images,
                split,
                context if isinstance(context, dict) else None,
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataSetError(f"{file}:{number}: {exc!r}") from exc
        if record.findings and record.images:
            studies.append(record)
    return studies


def load_studies(path: Path, fmt: DataFormat) -> list[StudyRecord]:
    """Studies of a data set in one of :data:`FORMATS`."""
    if not path.exists():
        raise DataSetError(f"{path} does not exist")
    loaders = {"iu-xml": load_iu_xml, "r2gen": load_r2gen, "kaggle": load_kaggle, "archive": load_archive}
    if fmt not in loaders:
        raise DataSetError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    studies = loaders[fmt](path)
    if not studies:
        raise DataSetError(f"{path}: no study with both FINDINGS text and an image")
    return studies


def split_studies(
    studies: Sequence[StudyRecord], ratios: tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 42
) -> Split:
    """Train/val/test study ids; a patient's studies stay in one split.

    A split the source prescribes (R2Gen's annotation) wins. Otherwise patients are shuffled with ``seed``
    and dealt out until each split reaches its share of studies.
    """
    if all(s.split is not None for s in studies):
        given: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for s in studies:
            given[str(s.split)].append(s.study_id)
        return Split(given["train"], given["val"], given["test"])
    if abs(sum(ratios) - 1.0) > 1e-6 or min(ratios) < 0:
        raise ValueError(f"split ratios {ratios} must be non-negative and sum to 1")
    by_patient: dict[str, list[str]] = defaultdict(list)
    for s in studies:
        by_patient[s.patient_id].append(s.study_id)
    patients = sorted(by_patient)
    random.Random(seed).shuffle(patients)  # noqa: S311 - a reproducible split, not a secret
    total = len(studies)
    targets = (ratios[0] * total, (ratios[0] + ratios[1]) * total)
    parts: tuple[list[str], list[str], list[str]] = ([], [], [])
    done = 0
    for patient in patients:
        index = 0 if done < targets[0] else 1 if done < targets[1] else 2
        parts[index].extend(by_patient[patient])
        done += len(by_patient[patient])
    return Split(*parts)
