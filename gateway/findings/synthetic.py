"""A synthetic chest X-ray data set whose reports are fully determined by the pixels.

Each study has a frontal and a lateral image. The frontal shows an optional lesion whose side (left/right),
zone (upper/lower), size (small/large), density (faint/dense) and shape (round/linear) the report names, and a
heart shadow that is either normal or enlarged. A pleural effusion, when present, shows only on the lateral
view, so a model that reads both views can say more than one that reads the frontal alone. The set is written
in each real IU X-Ray layout (and the gateway's archive), so the loaders, training, evaluation and the command
line can be exercised end to end without real data.

Side follows the radiographic convention: the patient's right is on the image's left.

Each study also has a clinical context (age, sex, indication; :func:`_context`) that carries some signal by
construction: the indication follows the effusion and the heart size four times in five (and is drawn at
random otherwise), and enlarged hearts come with older patients. The effusion shows only on the lateral view,
so the context tells a frontal-only model (the seed's cnn-lstm) something its image does not. That is a
property of this generator, not of real orders, whose indications say far less; it is there so that an
ablation with and without the context prefix can show the conditioning working.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from gateway.findings.data import DataFormat, StudyRecord, split_studies

__all__ = ["SyntheticStudy", "generate", "write_dataset", "write_dicom"]

U8 = npt.NDArray[np.uint8]
_ROOT = "1.2.826.0.1.3680043.10.1456"  # private root for synthetic UIDs


@dataclass(frozen=True, slots=True)
class SyntheticStudy:
    study_id: str
    patient_id: str
    findings: str
    frontal: U8
    lateral: U8
    context: dict[str, object] | None = None  # age, sex, indication (see _context)


def _canvas(size: int, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    xx = np.mgrid[0:size, 0:size][1].astype(np.float32) / size
    body = 0.25 + 0.15 * np.exp(-(((xx - 0.5) / 0.35) ** 2))  # soft tissue brighter at the midline
    canvas: npt.NDArray[np.float32] = (body + rng.normal(0, 0.03, (size, size))).astype(np.float32)
    return canvas


def _disc(img: npt.NDArray[np.float32], cy: float, cx: float, ry: float, rx: float, value: float) -> None:
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    img[mask] += value


def _to_u8(img: npt.NDArray[np.float32]) -> U8:
    pixels: U8 = np.clip(img * 255.0, 0, 255).astype(np.uint8)
    return pixels


INDICATIONS = {
    (True, True): "Heart failure with shortness of breath.",
    (True, False): "Shortness of breath.",
    (False, True): "Hypertension, follow up heart size.",
    (False, False): "Cough.",
}


def _context(effusion: bool, enlarged: bool, rng: random.Random) -> dict[str, object]:
    """Age, sex and an indication that follows the findings 80 % of the time (see the module docstring)."""
    key = (effusion, enlarged) if rng.random() < 0.8 else rng.choice(sorted(INDICATIONS))
    age = rng.randint(60, 92) if enlarged else rng.randint(20, 75)
    return {"age": age, "sex": rng.choice(("F", "M")), "indication": INDICATIONS[key]}


def _study(index: int, rng: np.random.Generator, size: int) -> tuple[str, U8, U8, bool, bool]:
    frontal, lateral = _canvas(size, rng), _canvas(size, rng)
    s = size / 64.0
    sentences = []
    if rng.random() < 0.85:
        side = str(rng.choice(["right", "left"]))
        zone = str(rng.choice(["upper", "lower"]))
        big = bool(rng.random() < 0.5)
        dense = bool(rng.random() < 0.5)
        linear = bool(rng.random() < 0.5)
        cx = (16 if side == "right" else 48) * s + rng.uniform(-3, 3) * s
        cy = (18 if zone == "upper" else 42) * s + rng.uniform(-3, 3) * s
        radius = (9.0 if big else 4.5) * s
        value = 0.6 if dense else 0.25
        ry = radius * 0.35 if linear else radius
        _disc(frontal, cy, cx, ry, radius, value)
        _disc(lateral, cy, 32 * s, ry, radius * 0.8, value * 0.8)
        sentences.append(
            f"There is a {'large' if big else 'small'} {'dense' if dense else 'faint'} "
            f"{'linear' if linear else 'round'} opacity in the {side} {zone} lung."
        )
    else:
        sentences.append("The lungs are clear.")
    enlarged = bool(rng.random() < 0.5)
    if enlarged:
        _disc(frontal, 40 * s, 34 * s, 11 * s, 15 * s, 0.35)
        _disc(lateral, 40 * s, 40 * s, 11 * s, 12 * s, 0.35)
        sentences.append("The heart is enlarged.")
    else:
        _disc(frontal, 42 * s, 34 * s, 8 * s, 9 * s, 0.35)
        _disc(lateral, 42 * s, 40 * s, 8 * s, 8 * s, 0.35)
        sentences.append("Cardiac silhouette within normal limits.")
    effusion = bool(rng.random() < 0.5)
    if effusion:
        lateral[int(54 * s) :, :] += 0.45
        sentences.append("Small pleural effusion is seen.")
    else:
        sentences.append("Costophrenic angles are sharp.")
    return " ".join(sentences), _to_u8(frontal), _to_u8(lateral), effusion, enlarged


def generate(count: int, seed: int = 0, size: int = 64) -> list[SyntheticStudy]:
    """``count`` studies; a fifth of the patients have two studies, to exercise patient-level splits."""
    rng = np.random.default_rng(seed)
    context_rng = random.Random(f"context-{seed}")  # noqa: S311 - test data; apart, so the pixels stay as they were
    studies = []
    patient = 0
    for index in range(count):
        findings, frontal, lateral, effusion, enlarged = _study(index, rng, size)
        context = _context(effusion, enlarged, context_rng)
        studies.append(
            SyntheticStudy(f"CXR{index + 1}", f"P{patient + 1}", findings, frontal, lateral, context)
        )
        if index % 10 != 0:  # every tenth study shares its patient with the next
            patient += 1
    return studies


def write_dicom(
    path: Path,
    pixels: npt.NDArray[np.uint8] | npt.NDArray[np.uint16],
    *,
    view_position: str | None,
    study_uid: str,
    patient_id: str,
    sop_instance_uid: str | None = None,
    monochrome1: bool = False,
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    transfer_syntax: str | None = None,
    extra: dict[str, object] | None = None,
) -> str:
    """A minimal DX-like instance holding ``pixels``; returns its SOP Instance UID.

    ``monochrome1`` stores inverted values with MONOCHROME1, ``rescale`` (slope, intercept) stores values
    that the Modality LUT maps back, ``transfer_syntax`` compresses (e.g. JPEG 2000 lossless through
    pylibjpeg-openjpeg).
    """
    uid = str(sop_instance_uid or generate_uid(prefix=_ROOT + "."))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid(prefix=_ROOT + ".")
    ds.PatientID = patient_id
    ds.Modality = "DX"
    if view_position is not None:
        ds.ViewPosition = view_position
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    values = pixels.astype(np.uint16) if pixels.dtype != np.uint8 else pixels
    bits = 8 if values.dtype == np.uint8 else 16
    maximum = (1 << bits) - 1
    stored = values.astype(np.float64)
    if rescale is not None:
        slope, intercept = rescale
        stored = (stored - intercept) / slope
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if monochrome1:
        stored = maximum - stored
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    array = np.clip(np.round(stored), 0, maximum).astype(np.uint8 if bits == 8 else np.uint16)
    ds.Rows, ds.Columns = array.shape
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = array.tobytes()
    if transfer_syntax is not None:
        ds.compress(transfer_syntax, array)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return uid


def _png(path: Path, pixels: U8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _xml(study: SyntheticStudy, image_ids: Sequence[str]) -> str:
    from xml.sax.saxutils import escape, quoteattr

    context = study.context or {}
    sex = {"F": "female ", "M": "male "}.get(str(context.get("sex")), "")
    indication = f"XXXX-year-old {sex}with {str(context.get('indication') or 'cough.').lower()}"

    images = "".join(
        f"<parentImage id={quoteattr(i)}><figureId>F{n + 1}</figureId><caption>Xray Chest PA and Lateral"
        f"</caption><url>/hadoop/storage/radiology/extract/{escape(i)}.jpg</url></parentImage>"
        for n, i in enumerate(image_ids)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<eCitation><meta type="rr"/>'
        f"<uId id={quoteattr(study.study_id)}/><pmcId id={quoteattr(study.study_id[3:])}/>"
        '<MedlineCitation Owner="Indiana University" Status="supplied by publisher">'
        '<Article PubModel="Electronic">'
        "<Journal>Indiana University Chest X-ray Collection</Journal><Abstract>"
        '<AbstractText Label="COMPARISON">None.</AbstractText>'
        f'<AbstractText Label="INDICATION">{escape(indication)}</AbstractText>'
        f'<AbstractText Label="FINDINGS">{escape(study.findings)}</AbstractText>'
        '<AbstractText Label="IMPRESSION">See findings.</AbstractText>'
        f"</Abstract></Article></MedlineCitation>{images}</eCitation>\n"
    )


def write_dataset(studies: Sequence[SyntheticStudy], out: Path, fmt: DataFormat, seed: int = 42) -> Path:
    """Write ``studies`` in layout ``fmt`` under ``out``; returns the path to pass as ``--data``."""
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "iu-xml":
        for n, study in enumerate(studies, 1):
            ids = [f"{study.study_id}_IM-{n:04d}-1001", f"{study.study_id}_IM-{n:04d}-2001"]
            _png(out / "NLMCXR_png" / f"{ids[0]}.png", study.frontal)
            _png(out / "NLMCXR_png" / f"{ids[1]}.png", study.lateral)
            xml_path = out / "ecgen-radiology" / f"{n}.xml"
            xml_path.parent.mkdir(parents=True, exist_ok=True)
            xml_path.write_text(_xml(study, ids), encoding="utf-8")
        return out
    if fmt == "r2gen":
        records = [StudyRecord(s.study_id, s.patient_id, s.findings, ()) for s in studies]
        split = split_studies(records, seed=seed)
        where = {sid: name for name in ("train", "val", "test") for sid in split.of(name)}
        annotation: dict[str, list[dict[str, object]]] = {"train": [], "val": [], "test": []}
        for n, study in enumerate(studies, 1):
            folder = f"{study.study_id}_IM-{n:04d}"
            _png(out / "images" / folder / "0.png", study.frontal)
            _png(out / "images" / folder / "1.png", study.lateral)
            annotation[where[study.study_id]].append(
                {
                    "id": folder,
                    "report": study.findings,
                    "image_path": [f"{folder}/0.png", f"{folder}/1.png"],
                    "split": where[study.study_id],
                }
            )
        (out / "annotation.json").write_text(json.dumps(annotation), encoding="utf-8")
        return out
    if fmt == "kaggle":
        with (
            (out / "indiana_reports.csv").open("w", encoding="utf-8", newline="") as rf,
            (out / "indiana_projections.csv").open("w", encoding="utf-8", newline="") as pf,
        ):
            reports = csv.writer(rf)
            projections = csv.writer(pf)
            reports.writerow(
                ["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"]
            )
            projections.writerow(["uid", "filename", "projection"])
            for n, study in enumerate(studies, 1):
                names = [f"{n}_IM-{n:04d}-1001.dcm.png", f"{n}_IM-{n:04d}-2001.dcm.png"]
                # Kaggle lists projections in no fixed order; put the lateral first to test that.
                for name, pixels, projection in (
                    (names[1], study.lateral, "Lateral"),
                    (names[0], study.frontal, "Frontal"),
                ):
                    _png(out / "images" / "images_normalized" / name, pixels)
                    projections.writerow([n, name, projection])
                reports.writerow(
                    [
                        n,
                        "normal",
                        "normal",
                        "Xray Chest PA and Lateral",
                        str((study.context or {}).get("indication") or ""),
                        "None.",
                        study.findings,
                        "See findings.",
                    ]
                )
        return out
    if fmt == "archive":
        rng = random.Random(seed)  # noqa: S311 - reproducible test data
        lines = []
        for study in studies:
            study_uid = generate_uid(prefix=_ROOT + ".", entropy_srcs=[study.study_id])
            images = []
            for pixels, view in ((study.frontal, "PA"), (study.lateral, "LL")):
                # Some instances come inverted (MONOCHROME1) or rescaled, as a real archive's do.
                name = f"{study.study_id}/{view}.dcm"
                uid = write_dicom(
                    out / name,
                    pixels,
                    view_position=view,
                    study_uid=study_uid,
                    patient_id=study.patient_id,
                    monochrome1=rng.random() < 0.3,
                    rescale=(2.0, -10.0) if rng.random() < 0.3 else None,
                )
                images.append({"path": name, "view_position": view, "sop_instance_uid": uid})
            lines.append(
                json.dumps(
                    {
                        "study_uid": study_uid,
                        "patient_id": study.patient_id,
                        "findings": study.findings,
                        "images": images,
                        "context": study.context,
                    }
                )
            )
        (out / "archive.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return out / "archive.jsonl"
    raise ValueError(f"unknown format {fmt!r}")


BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _container(code: str, meaning: str, texts: Sequence[str]) -> Dataset:
    from pydicom.sequence import Sequence as DicomSequence

    container = Dataset()
    container.RelationshipType = "CONTAINS"
    container.ValueType = "CONTAINER"
    container.ConceptNameCodeSequence = DicomSequence([_code(code, "DCM", meaning)])
    container.ContinuityOfContent = "SEPARATE"
    items = []
    for text in texts:
        item = Dataset()
        item.RelationshipType = "CONTAINS"
        item.ValueType = "TEXT"
        item.ConceptNameCodeSequence = DicomSequence(
            [_code(code[:-1] + str(int(code[-1]) + 1), "DCM", meaning)]
        )
        item.TextValue = text
        items.append(item)
    container.ContentSequence = DicomSequence(items)
    return container


def write_sr_report(
    path: Path,
    *,
    study_uid: str,
    patient_id: str,
    findings: str,
    indication: str | None = None,
    extra: dict[str, object] | None = None,
) -> str:
    """A Basic Text SR report with an Indication and a Findings container (DCM 121070), as a PACS sends it.

    The gateway reads it in ``read_report`` like any SR: the container names become the sections.
    """
    from pydicom.sequence import Sequence as DicomSequence

    uid = str(generate_uid(prefix=_ROOT + "."))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(BASIC_TEXT_SR)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid(prefix=_ROOT + ".")
    ds.PatientID = patient_id
    ds.Modality = "SR"
    ds.SeriesNumber = 91
    ds.InstanceNumber = 1
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = DicomSequence([_code("18748-4", "LN", "Diagnostic imaging report")])
    ds.ContinuityOfContent = "SEPARATE"
    containers = []
    if indication:
        containers.append(_container("121108", "Indication", [indication]))
    containers.append(_container("121070", "Findings", [findings]))
    ds.ContentSequence = DicomSequence(containers)
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return uid


_NAMES = (
    "Zhang^Wei",
    "Li^Na",
    "Wang^Fang",
    "Liu^Yang",
    "Chen^Jing",
    "Smith^John",
    "Garcia^Maria",
    "Brown^Ann",
)


def write_push_set(studies: Sequence[SyntheticStudy], out: Path, seed: int = 0) -> list[dict[str, object]]:
    """Each study as the files a modality and a RIS would send the gateway: a PA and an LL DX image and a
    Basic Text SR report whose FINDINGS is the study's text, with invented names and study dates (2023-2025).
    The study's context gives the patient's sex and birth date (its age at the study date) and the
    indication: in the SR's INDICATION container always, and, for every other study, also in the images'
    Reason for the Requested Procedure, as a worklist-fed modality writes it. A patient keeps the sex and
    birth date of its first study. Push ``out/*.dcm`` with storescu; returns what was written, per study.
    """
    rng = random.Random(seed)  # noqa: S311 - invented demographics, not a secret
    written: list[dict[str, object]] = []
    people: dict[str, tuple[str, str]] = {}
    for index, study in enumerate(studies):
        uid = f"{_ROOT}.88.{seed}.{index + 1}"
        context = study.context or {}
        year, month, day = rng.randint(2023, 2025), rng.randint(1, 12), rng.randint(1, 28)
        age = context.get("age")
        birth = f"{year - age}{month:02d}{max(1, day - 1):02d}" if isinstance(age, int) else "19600101"
        sex = str(context.get("sex") or rng.choice(("F", "M")))
        birth, sex = people.setdefault(study.patient_id, (birth, sex))
        header: dict[str, object] = {
            "PatientName": _NAMES[int(study.patient_id[1:]) % len(_NAMES)],
            "PatientBirthDate": birth,
            "PatientSex": sex,
            "StudyDate": f"{year}{month:02d}{day:02d}",
            "AccessionNumber": f"ACC{seed:02d}{index:06d}",
        }
        indication = str(context.get("indication") or "Cough.")
        image_header = {**header, "ReasonForTheRequestedProcedure": indication} if index % 2 else header
        views = [
            write_dicom(
                out / f"{index:05d}-{view}.dcm",
                pixels,
                view_position=view,
                study_uid=uid,
                patient_id=study.patient_id,
                extra=image_header,
            )
            for pixels, view in ((study.frontal, "PA"), (study.lateral, "LL"))
        ]
        write_sr_report(
            out / f"{index:05d}-SR.dcm",
            study_uid=uid,
            patient_id=study.patient_id,
            findings=study.findings,
            indication=indication,
            extra=header,
        )
        written.append({"study_uid": uid, "patient_id": study.patient_id, "views": views, **header})
    return written
