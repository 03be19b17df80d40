"""Write an invented chest study as DICOM Part-10 files plus ``manifest.json``.

The study belongs to an invented patient and holds:

* series 2, CT "Chest 5mm lung": 12 axial slices, lung window (-600/1500), with a right upper lobe nodule that
  is largest on instance 5;
* series 3, CT "Chest 10mm mediastinum": 6 thicker, smoothed slices, mediastinal window (40/400);
* series 4, DX chest: a PA frontal and a left lateral (LL) projection;
* series 90, an Encapsulated PDF report (PS3.3 A.45.1) in Chinese and English, whose text cites "Se 2 Im 5"
  and whose two embedded figures are cut from the study's own images;
* series 91, a Basic Text SR (PS3.3 A.35.1) with the same findings under headings.

``manifest.json`` records every file's UIDs and the ground-truth links from the report to the images, so that
the reading and alignment stages can be scored against it. A fixed seed gives the same UIDs and pixels.

Usage::

    python samples/make_sample_study.py --out samples/out/demo [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pymupdf
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

__all__ = ["build_sample_study", "main"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
DX_PRESENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
BASIC_TEXT_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.11"

PATIENT_NAME = "Demo^Patient"
PATIENT_ID = "DEMO-0001"
ACCESSION = "DEMOACC0001"
STUDY_DATE = "20240315"
STUDY_TIME = "093000"
REFERRING = "Example^Referrer^^Dr"
INSTITUTION = "Demo Imaging Centre"

CT_SLICES = 12
CT_SIZE = 256
CT_SPACING_MM = 1.4
CT_THICKNESS_MM = 5.0
CT_NODULE_INSTANCE = 5  # instance where the nodule is widest; cited as "Se 2 Im 5"
FIGURE1_INSTANCE = 6  # the slice figure 1 is cut from (differs from the cited one on purpose)
DX_SIZE = 512

FINDINGS_ZH = [
    "胸廓对称，气管居中。",
    "右肺上叶见不规则结节，边界欠清（图1）。",
    "结节最大层面见 Se 2 Im 5，大小约 14 mm × 11 mm。",
    "双肺门不大，纵隔内未见明显肿大淋巴结。",
    "胸部正位片示右上肺野小结节影（Figure 2），心影大小正常。",
]
FINDINGS_EN = [
    "The thorax is symmetric and the trachea is midline.",
    "An irregular nodule with ill-defined margins is seen in the right upper lobe (图1).",
    "The nodule is widest on Se 2 Im 5 and measures about 14 mm x 11 mm.",
    "No enlarged hilar or mediastinal lymph nodes.",
    "The frontal radiograph shows a small nodular opacity in the right upper zone (Figure 2); "
    "the heart size is normal.",
]
IMPRESSION_ZH = ["右肺上叶结节，建议 3 个月后复查胸部 CT。"]
IMPRESSION_EN = ["Right upper lobe nodule; follow-up chest CT in 3 months is advised."]


@dataclass(frozen=True)
class _Uids:
    """Deterministic UIDs derived from the seed."""

    seed: int

    def __call__(self, *parts: object) -> str:
        return str(generate_uid(entropy_srcs=["gateway-demo-study", str(self.seed), *map(str, parts)]))


# --------------------------------------------------------------------------------------------------- pixels


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> Any:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    y, x = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = x * c + y * s, -x * s + y * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _smooth(img: Any, passes: int = 2) -> Any:
    out = img.astype(np.float32)
    for _ in range(passes):
        out = (
            out + np.roll(out, 1, 0) + np.roll(out, -1, 0) + np.roll(out, 1, 1) + np.roll(out, -1, 1)
        ) / 5.0
    return out


def _ct_slice_hu(index: int, n: int, rng: np.random.Generator) -> Any:
    """One synthetic axial chest slice in Hounsfield units; ``index`` 0 is the most cranial."""
    shape = (CT_SIZE, CT_SIZE)
    t = index / max(n - 1, 1)  # 0 apex .. 1 base
    hu = np.full(shape, -1000.0, dtype=np.float32)
    body = _ellipse(shape, 128, 128, 88 + 10 * t, 112 + 8 * t)
    hu[body] = -90.0  # subcutaneous fat
    hu[_ellipse(shape, 128, 128, 80 + 10 * t, 104 + 8 * t)] = 40.0  # muscle wall
    # Lungs grow towards the base; the left one is cut by the heart lower down.
    lung_r = _ellipse(shape, 122, 84, 48 + 22 * t, 30 + 10 * t, 0.15)
    lung_l = _ellipse(shape, 122, 172, 46 + 22 * t, 28 + 10 * t, -0.15)
    hu[lung_r | lung_l] = -860.0
    if t > 0.35:
        heart = _ellipse(shape, 140, 146, 30 * t + 10, 36 * t + 8, -0.5)
        hu[heart] = 45.0
    hu[_ellipse(shape, 100, 128, 9, 9)] = 40.0  # aorta / great vessels
    hu[_ellipse(shape, 84, 128, 6, 5)] = -950.0  # trachea
    hu[_ellipse(shape, 190 + 4 * t, 128, 13, 14)] = 700.0  # vertebral body
    hu[_ellipse(shape, 206 + 4 * t, 128, 7, 5)] = 500.0  # spinous process
    for k in range(5):  # ribs seen in section, positions drift with the slice
        a = np.pi * (0.15 + 0.17 * k) + 0.05 * t
        for side in (-1, 1):
            cy = 128 + (92 + 10 * t) * np.sin(a) * 0.95
            cx = 128 + side * (108 + 8 * t) * np.cos(a)
            hu[_ellipse(shape, cy, cx, 4, 6, a)] = 650.0
    # Vessels: a handful of random dots in each lung, different on every slice.
    lungs = lung_r | lung_l
    ys, xs = np.nonzero(lungs)
    for j in rng.choice(len(ys), size=14, replace=False):
        hu[_ellipse(shape, ys[j], xs[j], 2.0 + rng.random() * 1.5, 2.0 + rng.random() * 1.5) & lungs] = 20.0
    # Nodule in the right upper lobe on instances 4..6 (index 3..5), widest at instance 5, lobulated.
    dz = index - (CT_NODULE_INSTANCE - 1)
    if abs(dz) <= 1:
        r = 10.0 if dz == 0 else 6.0
        nod = _ellipse(shape, 100, 76, r, r * 0.8, 0.4)
        for lobe in range(3):
            a = lobe * 2.1 + dz
            nod |= _ellipse(shape, 100 + r * 0.7 * np.sin(a), 76 + r * 0.7 * np.cos(a), r * 0.45, r * 0.45)
        hu[nod & lung_r] = 30.0
    hu = _smooth(hu, 1)
    hu += rng.normal(0.0, 12.0, size=shape).astype(np.float32)
    return np.clip(hu, -1024, 3071)


def _dx_image(lateral: bool, rng: np.random.Generator) -> Any:
    """A synthetic chest radiograph, 12 bits stored, MONOCHROME2 (bright = dense)."""
    shape = (DX_SIZE, DX_SIZE)
    img = np.full(shape, 300.0, dtype=np.float32)  # air around the patient
    if not lateral:
        img[_ellipse(shape, 270, 256, 230, 200)] = 2300.0  # soft tissue
        lung_r = _ellipse(shape, 250, 170, 150, 70, 0.05)
        lung_l = _ellipse(shape, 250, 342, 150, 66, -0.05)
        img[lung_r | lung_l] = 900.0
        img[_ellipse(shape, 330, 290, 85, 95, -0.3)] = 2500.0  # heart shadow
        img[:, 246:266][_ellipse(shape, 270, 256, 240, 200)[:, 246:266]] = 3300.0  # spine
        for k in range(9):  # ribs
            y = 130 + 28 * k
            for cx in (170, 342):
                img[_ellipse(shape, y, cx, 6, 80, 0.18 if cx < 256 else -0.18) & (lung_r | lung_l)] += 500.0
        img[_ellipse(shape, 175, 150, 9, 9)] += (
            700.0  # right upper zone nodule (patient's right = image left)
        )
        img[_ellipse(shape, 95, 256, 12, 150)] = 3000.0  # clavicles
    else:
        img[_ellipse(shape, 270, 250, 230, 150)] = 2300.0
        lung = _ellipse(shape, 250, 250, 160, 110)
        img[lung] = 950.0
        img[_ellipse(shape, 330, 215, 80, 70)] = 2450.0  # heart, anterior
        img[:, 360:390][_ellipse(shape, 270, 250, 230, 150)[:, 360:390]] = 3300.0  # spine, posterior
        img[_ellipse(shape, 250, 120, 150, 12)] = 2900.0  # sternum
        img[_ellipse(shape, 180, 280, 8, 8)] += 600.0
    img = _smooth(img, 4)
    img += rng.normal(0.0, 25.0, size=shape).astype(np.float32)
    return np.clip(img, 0, 4095).astype(np.uint16)


def _window_to_8bit(values: Any, center: float, width: float) -> Any:
    lo = center - width / 2.0
    return (np.clip((values - lo) / width, 0.0, 1.0) * 255.0).astype(np.uint8)


def _png(array8: Any, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array8, mode="L").resize(size, Image.Resampling.BILINEAR).save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------- datasets


def _base(sop_class: str, sop_uid: str, series_uid: str, ctx: dict[str, Any]) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "GW_DEMO_1"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = STUDY_DATE
    ds.StudyTime = STUDY_TIME
    ds.AccessionNumber = ACCESSION
    ds.ReferringPhysicianName = REFERRING
    ds.InstitutionName = INSTITUTION
    ds.Manufacturer = "Gateway Demo"
    ds.StudyDescription = "CT Chest and Chest X-ray"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = ctx["study_uid"]
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.FrameOfReferenceUID = ctx["frame_uid"]
    ds.PositionReferenceIndicator = ""
    return ds


def _image_pixels(ds: Dataset, pixels: Any, *, signed: bool, bits_stored: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"


def _ct_series(
    uids: _Uids, ctx: dict[str, Any], rng: np.random.Generator
) -> tuple[list[Dataset], list[Any], list[Dataset]]:
    """Series 2 (5 mm lung) and series 3 (10 mm mediastinum, built from averaged pairs of slices)."""
    hu_slices = [_ct_slice_hu(i, CT_SLICES, rng) for i in range(CT_SLICES)]
    top_z = 0.0
    lung: list[Dataset] = []
    s2 = uids("series", 2)
    for i, hu in enumerate(hu_slices, start=1):
        z = top_z - (i - 1) * CT_THICKNESS_MM
        ds = _ct_dataset(uids("ct", 2, i), s2, ctx, hu, i, z, CT_THICKNESS_MM, (-600, 1500))
        ds.SeriesNumber = 2
        ds.SeriesDescription = "Chest 5mm lung"
        ds.ConvolutionKernel = "LUNG"
        lung.append(ds)
    medi: list[Dataset] = []
    s3 = uids("series", 3)
    for j in range(CT_SLICES // 2):
        hu = _smooth((hu_slices[2 * j] + hu_slices[2 * j + 1]) / 2.0, 2)
        z = top_z - (2 * j + 0.5) * CT_THICKNESS_MM
        ds = _ct_dataset(uids("ct", 3, j + 1), s3, ctx, hu, j + 1, z, 2 * CT_THICKNESS_MM, (40, 400))
        ds.SeriesNumber = 3
        ds.SeriesDescription = "Chest 10mm mediastinum"
        ds.ConvolutionKernel = "SOFT"
        medi.append(ds)
    return lung, hu_slices, medi


def _ct_dataset(
    sop_uid: str,
    series_uid: str,
    ctx: dict[str, Any],
    hu: Any,
    instance: int,
    z: float,
    thickness: float,
    window: tuple[int, int],
) -> Dataset:
    ds = _base(CT_IMAGE_STORAGE, sop_uid, series_uid, ctx)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Modality = "CT"
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.SeriesDate = STUDY_DATE
    ds.SeriesTime = "093100"
    ds.ContentDate = STUDY_DATE
    ds.ContentTime = f"0931{instance:02d}"
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance
    ds.KVP = 120
    ds.SliceThickness = thickness
    ds.SpacingBetweenSlices = thickness
    ds.PixelSpacing = [CT_SPACING_MM, CT_SPACING_MM]
    half = CT_SIZE * CT_SPACING_MM / 2.0
    ds.ImagePositionPatient = [-half, -half, round(z, 2)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = round(z, 2)
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = window[0]
    ds.WindowWidth = window[1]
    stored = np.round(hu + 1024.0).astype(np.int16)
    _image_pixels(ds, stored, signed=True, bits_stored=16)
    return ds


def _dx_series(uids: _Uids, ctx: dict[str, Any], rng: np.random.Generator) -> list[Dataset]:
    series_uid = uids("series", 4)
    out = []
    for i, (view, lateral) in enumerate((("PA", False), ("LL", True)), start=1):
        ds = _base(DX_PRESENTATION_STORAGE, uids("dx", i), series_uid, ctx)
        del ds.FrameOfReferenceUID, ds.PositionReferenceIndicator
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.Modality = "DX"
        ds.BodyPartExamined = "CHEST"
        ds.SeriesNumber = 4
        ds.SeriesDescription = "Chest PA and lateral"
        ds.SeriesDate = STUDY_DATE
        ds.SeriesTime = "094500"
        ds.ContentDate = STUDY_DATE
        ds.ContentTime = f"09450{i}"
        ds.AcquisitionDateTime = f"{STUDY_DATE}09450{i}"
        ds.InstanceNumber = i
        ds.ViewPosition = view
        ds.PatientOrientation = ["P", "F"] if lateral else ["L", "F"]
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImagerPixelSpacing = [0.7, 0.7]
        ds.PixelSpacing = [0.7, 0.7]
        ds.BurnedInAnnotation = "NO"
        ds.DetectorType = "SCINTILLATOR"
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "US"
        ds.WindowCenter = 2048
        ds.WindowWidth = 4096
        ds.PresentationLUTShape = "IDENTITY"
        ds.LossyImageCompression = "00"
        view_code = ("R-10214", "postero-anterior") if not lateral else ("R-10236", "left lateral")
        vc = Dataset()
        vc.CodeValue, vc.CodingSchemeDesignator, vc.CodeMeaning = view_code[0], "SRT", view_code[1]
        vc.ViewModifierCodeSequence = Sequence()
        ds.ViewCodeSequence = Sequence([vc])
        ds.AnatomicRegionSequence = Sequence([_code("T-D3000", "SRT", "Chest")])
        _image_pixels(ds, _dx_image(lateral, rng), signed=False, bits_stored=12)
        out.append(ds)
    return out


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue = value
    c.CodingSchemeDesignator = scheme
    c.CodeMeaning = meaning
    return c


# --------------------------------------------------------------------------------------------------- report


def _figure1_png(hu: Any) -> bytes:
    """A crop around the right upper lobe, rendered with the mediastinal window, not the lung window."""
    crop = hu[40:168, 16:144]  # 128 x 128 px
    return _png(_window_to_8bit(crop, 40, 400), (220, 220))


def _figure2_png(dx: Dataset) -> bytes:
    px = np.frombuffer(dx.PixelData, dtype=np.uint16).reshape(dx.Rows, dx.Columns).astype(np.float32)
    return _png(_window_to_8bit(px, 2000, 3600), (240, 240))


def _report_pdf(fig1: bytes, fig2: bytes) -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)  # A4 in points
    # MuPDF's own CJK font is TrueType, so it can be subset and embedded (about 10 KB). The Noto CJK
    # collection is CFF-based and MuPDF embeds it whole (13 MB per report), so it is not used here.
    font = "cjk"
    page.insert_font(fontname=font, fontbuffer=pymupdf.Font("cjk").buffer)
    margin = 50.0
    y = margin

    def para(text: str, size: float = 10.5, gap: float = 4.0) -> None:
        nonlocal y
        rect = pymupdf.Rect(margin, y, page.rect.width - margin, page.rect.height - margin)
        rest = page.insert_textbox(rect, text, fontname=font, fontsize=size, lineheight=1.35)
        if rest < 0:
            raise RuntimeError(f"report text does not fit: {text[:30]!r}")
        y = page.rect.height - margin - rest + gap

    para("Demo Imaging Centre  放射科诊断报告 / Radiology Report", 15, 8)
    para(
        f"姓名 Name: Demo Patient    ID: {PATIENT_ID}    检查号 Accession: {ACCESSION}\n"
        f"检查日期 Date: 2024-03-15    检查项目 Exam: CT Chest + Chest X-ray (DX PA/LAT)",
        9.5,
        10,
    )
    para("影像所见 / FINDINGS", 12.5, 4)
    for zh, en in zip(FINDINGS_ZH, FINDINGS_EN, strict=True):
        para(f"{zh}\n{en}", 10, 3)
    y += 6
    para("诊断意见 / IMPRESSION", 12.5, 4)
    for zh, en in zip(IMPRESSION_ZH, IMPRESSION_EN, strict=True):
        para(f"{zh}\n{en}", 10, 3)
    y += 8

    # Figures side by side, captions underneath.
    w1, w2 = 200.0, 200.0
    x1 = margin
    x2 = page.rect.width - margin - w2
    r1 = pymupdf.Rect(x1, y, x1 + w1, y + w1)
    r2 = pymupdf.Rect(x2, y, x2 + w2, y + w2)
    page.insert_image(r1, stream=fig1)
    page.insert_image(r2, stream=fig2)
    cy = y + w1 + 4
    page.insert_textbox(
        pymupdf.Rect(x1, cy, x1 + w1, cy + 40), "图1  右肺上叶结节（纵隔窗）", fontname=font, fontsize=9
    )
    page.insert_textbox(
        pymupdf.Rect(x2, cy, x2 + w2, cy + 40),
        "Figure 2  Chest radiograph, PA view",
        fontname=font,
        fontsize=9,
    )
    y = cy + 50
    para("报告医师 Reporting radiologist: Example^Reader    审核 Verified: 2024-03-15 11:20", 9, 0)
    stamp = "D:20240315112000+08'00'"  # fixed, so that a seed gives the same bytes
    doc.set_metadata(
        {
            "title": "Radiology Report DEMO-0001",
            "author": "Gateway demo",
            "creator": "Gateway demo",
            "producer": "Gateway demo",
            "creationDate": stamp,
            "modDate": stamp,
        }
    )
    doc.subset_fonts()
    data: bytes = doc.tobytes(garbage=3, deflate=True, no_new_id=True)
    doc.close()
    return data


def _pdf_dataset(uids: _Uids, ctx: dict[str, Any], pdf: bytes) -> Dataset:
    ds = _base(ENCAPSULATED_PDF_STORAGE, uids("pdf", 1), uids("series", 90), ctx)
    del ds.FrameOfReferenceUID, ds.PositionReferenceIndicator
    ds.Modality = "DOC"
    ds.SeriesNumber = 90
    ds.SeriesDescription = "Radiology report (PDF)"
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.ContentDate = STUDY_DATE
    ds.ContentTime = "112000"
    ds.AcquisitionDateTime = f"{STUDY_DATE}112000"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = "Radiology Report"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic imaging report")])
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    return ds


def _sr_dataset(uids: _Uids, ctx: dict[str, Any], images: list[Dataset], cited: Dataset) -> Dataset:
    ds = _base(BASIC_TEXT_SR_STORAGE, uids("sr", 1), uids("series", 91), ctx)
    del ds.FrameOfReferenceUID, ds.PositionReferenceIndicator
    ds.Modality = "SR"
    ds.SeriesNumber = 91
    ds.SeriesDescription = "Radiology report (SR)"
    ds.InstanceNumber = 1
    ds.ContentDate = STUDY_DATE
    ds.ContentTime = "112000"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    observer = Dataset()
    observer.VerifyingObserverName = "Example^Reader"
    observer.VerifyingOrganization = INSTITUTION
    observer.VerificationDateTime = f"{STUDY_DATE}112000"
    observer.VerifyingObserverIdentificationCodeSequence = Sequence()
    ds.VerifyingObserverSequence = Sequence([observer])
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.PerformedProcedureCodeSequence = Sequence()

    # Evidence: every image the report was read from (PS3.3 C.17.2.2).
    by_series: dict[str, list[Dataset]] = {}
    for img in images:
        by_series.setdefault(img.SeriesInstanceUID, []).append(img)
    series_items = []
    for series_uid, members in by_series.items():
        s = Dataset()
        s.SeriesInstanceUID = series_uid
        s.ReferencedSOPSequence = Sequence([_sop_ref(m) for m in members])
        series_items.append(s)
    study = Dataset()
    study.StudyInstanceUID = ctx["study_uid"]
    study.ReferencedSeriesSequence = Sequence(series_items)
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([study])

    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic imaging report")])
    ds.ContinuityOfContent = "SEPARATE"
    findings = _container(
        "121070", "Findings", [_text("121071", "Finding", t) for t in _bilingual(FINDINGS_ZH, FINDINGS_EN)]
    )
    # The cited image hangs under the sentence that cites it (INFERRED FROM, PS3.3 C.17.3.2.4).
    cited_text = findings.ContentSequence[2]
    img = Dataset()
    img.RelationshipType = "INFERRED FROM"
    img.ValueType = "IMAGE"
    img.ReferencedSOPSequence = Sequence([_sop_ref(cited)])
    cited_text.ContentSequence = Sequence([img])
    impression = _container(
        "121072",
        "Impressions",
        [_text("121073", "Impression", t) for t in _bilingual(IMPRESSION_ZH, IMPRESSION_EN)],
    )
    ds.ContentSequence = Sequence([findings, impression])
    return ds


def _bilingual(zh: list[str], en: list[str]) -> list[str]:
    return [f"{a} {b}" for a, b in zip(zh, en, strict=True)]


def _sop_ref(ds: Dataset) -> Dataset:
    r = Dataset()
    r.ReferencedSOPClassUID = ds.SOPClassUID
    r.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return r


def _container(code: str, meaning: str, children: list[Dataset]) -> Dataset:
    c = Dataset()
    c.RelationshipType = "CONTAINS"
    c.ValueType = "CONTAINER"
    c.ConceptNameCodeSequence = Sequence([_code(code, "DCM", meaning)])
    c.ContinuityOfContent = "SEPARATE"
    c.ContentSequence = Sequence(children)
    return c


def _text(code: str, meaning: str, text: str) -> Dataset:
    t = Dataset()
    t.RelationshipType = "CONTAINS"
    t.ValueType = "TEXT"
    t.ConceptNameCodeSequence = Sequence([_code(code, "DCM", meaning)])
    t.TextValue = text
    return t


# --------------------------------------------------------------------------------------------------- entry


def build_sample_study(out_dir: Path, *, seed: int = 0) -> dict[str, Any]:
    """Write the sample study into ``out_dir`` (created if needed) and return its manifest.

    The same ``seed`` gives the same UIDs, pixels and report. ``out_dir`` receives ``*.dcm`` files and
    ``manifest.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    uids = _Uids(seed)
    rng = np.random.default_rng(seed)
    ctx = {"study_uid": uids("study"), "frame_uid": uids("frame")}

    lung, hu_slices, medi = _ct_series(uids, ctx, rng)
    dx = _dx_series(uids, ctx, rng)
    pdf = _report_pdf(_figure1_png(hu_slices[FIGURE1_INSTANCE - 1]), _figure2_png(dx[0]))
    pdf_ds = _pdf_dataset(uids, ctx, pdf)
    cited = lung[CT_NODULE_INSTANCE - 1]
    sr_ds = _sr_dataset(uids, ctx, [*lung, *medi, *dx], cited)

    files: list[dict[str, Any]] = []
    named = (
        [(f"CT_S2_{d.InstanceNumber:03d}.dcm", d) for d in lung]
        + [(f"CT_S3_{d.InstanceNumber:03d}.dcm", d) for d in medi]
        + [(f"DX_S4_{d.InstanceNumber:03d}_{d.ViewPosition}.dcm", d) for d in dx]
        + [("DOC_S90_report.dcm", pdf_ds), ("SR_S91_report.dcm", sr_ds)]
    )
    for name, ds in named:
        ds.save_as(out_dir / name, enforce_file_format=True)
        entry: dict[str, Any] = {
            "file": name,
            "sop_class_uid": str(ds.SOPClassUID),
            "sop_instance_uid": str(ds.SOPInstanceUID),
            "series_instance_uid": str(ds.SeriesInstanceUID),
            "series_number": int(ds.SeriesNumber),
            "instance_number": int(ds.InstanceNumber),
            "modality": str(ds.Modality),
        }
        if "ViewPosition" in ds:
            entry["view_position"] = str(ds.ViewPosition)
        files.append(entry)

    manifest: dict[str, Any] = {
        "generator": "samples/make_sample_study.py",
        "seed": seed,
        "invented": True,
        "study_instance_uid": ctx["study_uid"],
        "patient_id": PATIENT_ID,
        "patient_name": PATIENT_NAME,
        "accession_number": ACCESSION,
        "report": {"pdf": "DOC_S90_report.dcm", "sr": "SR_S91_report.dcm"},
        "files": files,
        "links": {
            "Se 2 Im 5": str(cited.SOPInstanceUID),
            "figure:1": str(lung[FIGURE1_INSTANCE - 1].SOPInstanceUID),
            "figure:2": str(dx[0].SOPInstanceUID),
        },
        "figures": {
            "figure:1": {
                "caption": "图1  右肺上叶结节（纵隔窗）",
                "source": {"series_number": 2, "instance_number": FIGURE1_INSTANCE},
                "rendering": "rows 40-167, columns 16-143; window 40/400 (the series' is -600/1500); 220 px",
            },
            "figure:2": {
                "caption": "Figure 2  Chest radiograph, PA view",
                "source": {"series_number": 4, "instance_number": 1},
                "rendering": "whole image, window 2000/3600, 240 px",
            },
        },
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", "utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("samples/out/demo"), help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed for UIDs and pixels (default 0)")
    args = parser.parse_args(argv)
    manifest = build_sample_study(args.out, seed=args.seed)
    print(f"wrote {len(manifest['files'])} files and manifest.json to {args.out}")
    print(f"study {manifest['study_instance_uid']}")
    for key, uid in manifest["links"].items():
        print(f"  {key:10s} -> {uid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
