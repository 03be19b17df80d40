"""Labelled studies for the aligner benchmark: DICOM files, a report PDF (and its scan), and the truth.

Each case is a directory::

    <case>/dicom/<series number>/<instance number>.dcm   one file per instance (CT, MR, CR/DX)
    <case>/report.pdf                                   the report with its text layer and embedded figures
    <case>/report-scan.pdf                              the same pages rendered, degraded and re-wrapped
    <case>/truth.json                                   every reference and caption with its expected instance

``truth.json`` lists each reference as written in the report with the SOP Instance UID it must link to (null
for a figure from another study, or a figure or image that does not exist), that instance's ±1 neighbours in
its series, and tags naming the variations it exercises (modality, language, layout, figure treatment,
reference form). The generator is deterministic by seed, so a suite can be rebuilt anywhere and compared.

Volumes are smooth 3-D fields and ellipsoids computed with numpy, so thin slices of one series genuinely look
alike; a figure is a viewer screenshot of one slice (other window, crop, rescale, burnt-in text, JPEG), with
the variations the issue names (crop to 40 %, small rotation, colour overlays, montages, lung vs mediastinal
window, decoys from another patient, a comparison radiograph and a prior).

    python benchmarks/align_suite.py --out /tmp/align-suite --studies 30 [--large]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pymupdf
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SUITE_VERSION = 3
FONT_FILE = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"
LUNG, MEDIASTINUM, BONE = (-600.0, 1500.0), (40.0, 400.0), (400.0, 1800.0)

#: Study kinds in rotation; every kind appears at least 5 times in a 30-study suite.
KINDS = ("ct-recon", "ct-thick", "mr", "dx", "ct-thin", "ct-recon")
LANGS = ("zh", "en", "bi", "zh", "en")
#: Position reference forms: name → template with {s} series and {i} instance.
POSITION_FORMS: dict[str, str] = {
    "se-im": "Se {s} Im {i}",
    "se/im": "Se{s}/Im{i}",
    "s-i": "S{s} I{i}",
    "s:i": "S{s}:I{i}",
    "series-image": "series {s}, image {i}",
    "image-of-series": "image {i} of series {s}",
    "colon-pair": "({s}:{i})",
    "zh-fu": "序列{s} 第{i}幅",
    "zh-ceng": "第{s}序列第{i}层",
}


# ------------------------------------------------------------------------------------------------ volumes


def smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], cell: tuple[float, float]) -> Any:
    """A smooth random field of ``shape`` (z, y, x), unit variance, correlated over ``cell`` (z, xy)."""
    nz, ny, nx = shape
    lz = max(2, math.ceil(nz / cell[0]) + 2)
    lxy = max(2, math.ceil(max(ny, nx) / cell[1]) + 2)
    low = rng.normal(size=(lz, lxy, lxy)).astype(np.float32)
    planes = np.stack([cv2.resize(p, (nx, ny), interpolation=cv2.INTER_CUBIC) for p in low])
    pos = np.linspace(0.5, lz - 1.5, nz, dtype=np.float32)
    i0 = np.clip(np.floor(pos).astype(int), 0, lz - 2)
    t = pos - i0
    t = (t * t * (3 - 2 * t))[:, None, None]  # smoothstep: no kinks between control planes
    out = planes[i0] * (1 - t) + planes[i0 + 1] * t
    out -= out.mean()
    return out / max(float(out.std()), 1e-6)


def _grid(size: int) -> tuple[Any, Any]:
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5  # -0.5 .. 0.5 of the field of view
    return np.meshgrid(axis, axis)


@dataclass
class Anatomy:
    """One synthetic patient's chest: sizes and lesion positions in normalised coordinates (FOV = 1)."""

    body: tuple[float, float]
    lung_r: tuple[float, float]
    heart: tuple[float, float, float]
    nodules: list[tuple[float, float, float, float, float]]  # x, y, z (0..1 of extent), radius, HU
    shift: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def random(cls, rng: np.random.Generator) -> Anatomy:
        nodules = []
        for _ in range(int(rng.integers(4, 9))):
            side = rng.choice([-1.0, 1.0])
            nodules.append(
                (
                    float(side * rng.uniform(0.1, 0.24)),
                    float(rng.uniform(-0.15, 0.12)),
                    float(rng.uniform(0.1, 0.9)),
                    float(rng.uniform(0.012, 0.035)),
                    float(rng.uniform(-80, 120)),
                )
            )
        return cls(
            body=(float(rng.uniform(0.40, 0.46)), float(rng.uniform(0.28, 0.34))),
            lung_r=(float(rng.uniform(0.12, 0.15)), float(rng.uniform(0.19, 0.23))),
            heart=(
                float(rng.uniform(-0.06, 0.0)),
                float(rng.uniform(0.09, 0.12)),
                float(rng.uniform(0.4, 0.6)),
            ),
            nodules=nodules,
        )


def chest_volume(
    anatomy: Anatomy, n: int, size: int, spacing_mm: float, rng: np.random.Generator, z0: float = 0.0
) -> Any:
    """HU of ``n`` axial slices ``spacing_mm`` apart (field of view 350 mm): body, lungs with vessels, heart,
    aorta, spine, ribs and nodules. Structures vary smoothly along z, so adjacent thin slices look alike."""
    xx, yy = _grid(size)
    xx, yy = xx - anatomy.shift[0], yy - anatomy.shift[1]
    fov = 350.0
    extent = 300.0  # mm of the chest that z 0..1 spans
    zmm = z0 + np.arange(n, dtype=np.float32) * spacing_mm
    zn = zmm / extent
    px_mm = fov / size
    vessels = smooth_field(rng, (n, size, size), (6.0 / spacing_mm, 7.0 / px_mm))
    texture = smooth_field(rng, (n, size, size), (25.0 / spacing_mm, 30.0 / px_mm))
    vol = np.empty((n, size, size), dtype=np.float32)
    for k in range(n):
        z = float(np.clip(zn[k], -0.3, 1.3))
        prof = math.sin(math.pi * z) if 0 < z < 1 else 0.0  # lungs grow then shrink with z
        img = np.full((size, size), -1000.0, dtype=np.float32)
        neck = 1.0 if z > 0.02 else 0.45 + 0.55 * max(0.0, 1 + (z - 0.02) / 0.04)  # shoulders, then the neck
        bx, by = anatomy.body[0] * min(1.0, neck), anatomy.body[1] * min(1.0, max(neck, 0.6))
        body = (xx / bx) ** 2 + (yy / by) ** 2
        img[body < 1] = -100.0  # subcutaneous fat
        inner = (xx / (bx - 0.025)) ** 2 + (yy / (by - 0.025)) ** 2 < 1
        img[inner] = 40.0 + 15.0 * texture[k][inner]
        rx, ry = anatomy.lung_r[0] * (0.55 + 0.45 * prof), anatomy.lung_r[1] * (0.5 + 0.5 * prof)
        for cx in (-0.19, 0.19) if prof > 0.15 else ():
            lung = ((xx - cx) / rx) ** 2 + ((yy + 0.01) / ry) ** 2 < 1
            img[lung] = -860.0 + 40.0 * texture[k][lung] + 900.0 * (np.abs(vessels[k][lung]) < 0.12)
        hx, hr, hz = anatomy.heart
        hrz = hr * max(0.0, 1 - ((z - hz) / 0.35) ** 2) ** 0.5
        if hrz > 0.01:
            heart = ((xx - hx) / hrz) ** 2 + ((yy + 0.05) / (hrz * 0.85)) ** 2 < 1
            img[heart] = 45.0 + 10.0 * texture[k][heart]
        aorta = (xx - 0.03) ** 2 + (yy - 0.08) ** 2 < 0.028**2
        img[aorta] = 180.0
        spine = (xx**2 + (yy - 0.2) ** 2) < 0.045**2
        img[spine] = 350.0
        cortex = np.abs(np.sqrt(xx**2 + (yy - 0.2) ** 2) - 0.045) < 0.008
        img[cortex] = 900.0
        phase = (zmm[k] % 28.0) / 28.0  # ribs come and go every ~28 mm
        for j in range(10):
            a = math.pi * (j / 9.0) + 0.15 * math.sin(2 * math.pi * phase)
            if abs(math.sin(2 * math.pi * (phase + j * 0.07))) < 0.55:
                continue
            rxp, ryp = 0.97 * bx * math.cos(a) * 0.92, 0.9 * by * math.sin(a) * 0.95
            rib = ((xx - rxp) ** 2 + (yy - ryp) ** 2) < 0.014**2
            img[rib] = 700.0
        for nx_, ny_, nz_, nr, hu in anatomy.nodules:
            dz = (z - nz_) * extent / (nr * fov)
            if abs(dz) >= 1:
                continue
            r = nr * math.sqrt(1 - dz * dz)
            nod = (xx - nx_) ** 2 + (yy - ny_) ** 2 < r * r
            img[nod] = hu
        vol[k] = img
    return vol


def reconstruct(hu: Any, kernel: str, rng: np.random.Generator) -> Any:
    """A reconstruction kernel: "lung" is sharp and noisy, "soft" smooth and quiet (per slice)."""
    out = np.empty_like(hu)
    for k, img in enumerate(hu):
        if kernel == "lung":
            blur = cv2.GaussianBlur(img, (0, 0), 1.0)
            sharp = img + 0.6 * (img - blur)
            out[k] = sharp + rng.normal(0, 22, img.shape).astype(np.float32)
        else:
            out[k] = cv2.GaussianBlur(img, (0, 0), 1.1) + rng.normal(0, 7, img.shape).astype(np.float32)
    return out


def slab(hu: Any, factor: int) -> Any:
    """Thick slices averaged from ``factor`` thin ones."""
    n = hu.shape[0] // factor
    return hu[: n * factor].reshape(n, factor, *hu.shape[1:]).mean(axis=1)


def head_labels(rng: np.random.Generator, n: int, size: int, spacing: float) -> Any:
    """Tissue classes of a head: 0 air, 1 scalp/fat, 2 skull, 3 CSF, 4 grey, 5 white, 6 lesion."""
    xx, yy = _grid(size)
    field_ = smooth_field(rng, (n, size, size), (12.0 / spacing, 10.0))
    lesions = [
        (rng.uniform(-0.15, 0.15), rng.uniform(-0.18, 0.18), rng.uniform(0.2, 0.8), rng.uniform(0.02, 0.05))
        for _ in range(int(rng.integers(2, 5)))
    ]
    ax, ay = rng.uniform(0.33, 0.37), rng.uniform(0.40, 0.44)
    labels = np.zeros((n, size, size), dtype=np.uint8)
    for k in range(n):
        z = k / max(1, n - 1)
        s = math.sqrt(max(0.05, 1 - ((z - 0.45) / 0.75) ** 2))
        r = (xx / (ax * s)) ** 2 + (yy / (ay * s)) ** 2
        lab = np.zeros((size, size), dtype=np.uint8)
        lab[r < 1] = 1
        lab[r < 0.93] = 2
        lab[r < 0.84] = 3
        lab[r < 0.8] = 4
        brain = r < 0.8
        lab[brain & (field_[k] > -0.2) & (r < 0.7)] = 5
        vr = 0.06 + 0.05 * math.sin(math.pi * z)
        for cx in (-0.05, 0.05):
            vent = ((xx - cx) / (vr * 0.6)) ** 2 + ((yy + 0.02) / (vr * 1.8)) ** 2 < 1
            lab[vent & brain] = 3
        for lx, ly, lz, lr in lesions:
            dz = (z - lz) / 0.12
            if abs(dz) < 1:
                rr = lr * math.sqrt(1 - dz * dz)
                lab[((xx - lx) ** 2 + (yy - ly) ** 2 < rr * rr) & brain] = 6
        labels[k] = lab
    return labels


MR_CONTRASTS: dict[str, tuple[float, ...]] = {
    # air, fat, skull, CSF, grey, white, lesion
    "T1": (0, 900, 80, 250, 600, 800, 450),
    "T2": (0, 500, 60, 1600, 900, 650, 1400),
    "FLAIR": (0, 600, 60, 150, 850, 650, 1500),
}


def mr_series(labels: Any, contrast: str, rng: np.random.Generator) -> Any:
    table = np.array(MR_CONTRASTS[contrast], dtype=np.float32)
    img = table[labels]
    bias = 1 + 0.15 * smooth_field(rng, labels.shape, (8.0, 90.0))
    out = np.empty_like(img)
    for k in range(img.shape[0]):
        sm = cv2.GaussianBlur(img[k], (0, 0), 0.9) * bias[k]
        noise = rng.normal(0, 18, (2, *sm.shape)).astype(np.float32)
        out[k] = np.sqrt((sm + noise[0]) ** 2 + noise[1] ** 2)  # Rician magnitude noise
    return out


def radiograph(anatomy: Anatomy, rng: np.random.Generator, lateral: bool, rows: int = 512) -> Any:
    """A chest radiograph (12-bit, bone bright) projected through a coarse CT volume of the patient."""
    hu = chest_volume(anatomy, 112, 128, 420.0 / 112, rng, z0=-75.0)  # neck to upper abdomen
    mu = np.clip((hu + 1000.0) / 1000.0, 0, None)
    proj = mu.sum(axis=2 if lateral else 1)  # (z, x or y)
    proj = cv2.GaussianBlur(proj, (0, 0), 1.0)
    img = cv2.resize(proj.astype(np.float32), (int(rows * 0.9), rows), interpolation=cv2.INTER_CUBIC)
    img = img + 1.5 * (img - cv2.GaussianBlur(img, (0, 0), 12.0))  # the equalisation of a CR/DX processor
    lo, hi = np.percentile(img, [1, 99.5])
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1) ** 0.8
    img = img * 3600 + 200 + rng.normal(0, 25, img.shape)
    return np.clip(img, 0, 4095)


# -------------------------------------------------------------------------------------------------- DICOM


@dataclass
class Slice:
    uid: str
    series: int
    instance: int
    values: Any  # after the Modality LUT (HU for CT)
    position: tuple[float, float, float]
    window: tuple[float, float]


@dataclass
class SeriesSpec:
    number: int
    uid: str
    modality: str
    description: str
    sop_class: str
    body_part: str
    slices: list[Slice] = field(default_factory=list)
    thickness: float = 0.0
    spacing: float = 1.0
    kernel: str | None = None
    #: The share of the series (first, last) a figure or reference is taken from: where the lesions are.
    pick: tuple[float, float] = (0.12, 0.88)


class Uids:
    def __init__(self, *seed: object) -> None:
        self._seed = [str(s) for s in seed]

    def __call__(self, *parts: object) -> str:
        return str(generate_uid(entropy_srcs=["gateway-align-suite", *self._seed, *map(str, parts)]))


def write_series(spec: SeriesSpec, study: dict[str, Any], root: Path) -> None:
    folder = root / str(spec.number)
    folder.mkdir(parents=True, exist_ok=True)
    for sl in spec.slices:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = spec.sop_class
        meta.MediaStorageSOPInstanceUID = sl.uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID, ds.SOPInstanceUID = spec.sop_class, sl.uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study["study_uid"], spec.uid
        ds.FrameOfReferenceUID = study["frame_uid"]
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = study["date"], "093000", study["accession"]
        ds.PatientName, ds.PatientID, ds.PatientSex = study["patient_name"], study["patient_id"], "O"
        ds.StudyID, ds.StudyDescription = "1", study["description"]
        ds.Modality, ds.BodyPartExamined = spec.modality, spec.body_part
        ds.SeriesNumber, ds.InstanceNumber = spec.number, sl.instance
        ds.SeriesDescription = spec.description
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if spec.modality in ("CT", "MR") else ""]
        values = sl.values
        rows, cols = values.shape
        ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16 if spec.modality == "CT" else 12, 15
        if spec.modality in ("CT", "MR"):
            ds.ImagePositionPatient = [round(v, 3) for v in sl.position]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.SliceThickness = spec.thickness
            ds.SpacingBetweenSlices = spec.spacing
            ds.SliceLocation = round(sl.position[2], 3)
            fov = 350.0 if spec.modality == "CT" else 240.0
            ds.PixelSpacing = [round(fov / rows, 4), round(fov / cols, 4)]
        else:
            ds.ImagerPixelSpacing = [0.7, 0.7]
            ds.PixelSpacing = [0.7, 0.7]
            ds.ViewPosition = "LL" if "LAT" in spec.description.upper() else "PA"
            ds.HighBit = 11
            ds.PresentationIntentType = "FOR PRESENTATION"
        if spec.modality == "CT":
            ds.ConvolutionKernel = spec.kernel or "STANDARD"
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
            ds.PixelRepresentation = 1
            stored = np.clip(np.round(values + 1024), -32768, 32767).astype(np.int16)
        else:
            ds.RescaleIntercept, ds.RescaleSlope = 0, 1
            ds.PixelRepresentation = 0
            stored = np.clip(np.round(values), 0, 4095).astype(np.uint16)
        ds.WindowCenter, ds.WindowWidth = sl.window
        ds.PixelData = stored.tobytes()
        ds["PixelData"].VR = "OW"
        ds.save_as(folder / f"{sl.instance:05d}.dcm", enforce_file_format=True)


def make_series(
    uids: Uids,
    number: int,
    modality: str,
    description: str,
    values: Any,
    *,
    spacing: float,
    thickness: float,
    window: tuple[float, float],
    z0: float = 0.0,
    kernel: str | None = None,
    body_part: str = "CHEST",
) -> SeriesSpec:
    sop = {"CT": CT_STORAGE, "MR": MR_STORAGE, "CR": CR_STORAGE, "DX": DX_STORAGE}[modality]
    spec = SeriesSpec(
        number, uids("series", number), modality, description, sop, body_part, [], thickness, spacing, kernel
    )
    fov = 350.0 if modality == "CT" else 240.0
    for k, img in enumerate(values, start=1):
        pos = (-fov / 2, -fov / 2, round(z0 - (k - 1) * spacing, 3))
        spec.slices.append(Slice(uids("sop", number, k), number, k, np.asarray(img, np.float32), pos, window))
    return spec


# ------------------------------------------------------------------------------------------------ figures


def window8(values: Any, window: tuple[float, float]) -> Any:
    c, w = window
    return np.clip((values.astype(np.float32) - (c - w / 2)) / w * 255.0, 0, 255).astype(np.uint8)


YELLOW, RED, GREEN, CYAN = (255, 230, 0), (240, 40, 40), (40, 220, 60), (0, 220, 240)


def screenshot(
    values: Any, window: tuple[float, float], rng: np.random.Generator, tags: Sequence[str], label: str = ""
) -> Any:
    """A viewer screenshot of one slice as RGB: window, zoom, crop, rotation, burnt-in text, overlays."""
    grey = window8(values, window)
    h, w = grey.shape
    zoom = 512.0 / max(h, w) if max(h, w) < 512 else 1.0
    grey = cv2.resize(grey, (round(w * zoom), round(h * zoom)), interpolation=cv2.INTER_LINEAR)
    h, w = grey.shape
    frac = rng.uniform(0.40, 0.50) if "crop40" in tags else rng.uniform(0.72, 1.0)
    cw, ch = int(w * frac), int(h * frac * rng.uniform(0.9, 1.1) if frac < 0.99 else h)
    ch = min(ch, h)
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    if "crop40" in tags:  # crops are of something: keep them inside the body
        x0 = int(np.clip(w / 2 - cw / 2 + rng.uniform(-0.15, 0.15) * w, 0, w - cw))
        y0 = int(np.clip(h / 2 - ch / 2 + rng.uniform(-0.1, 0.1) * h, 0, h - ch))
    grey = grey[y0 : y0 + ch, x0 : x0 + cw]
    if "rotate" in tags:
        angle = float(rng.uniform(2.0, 5.0) * rng.choice([-1, 1]))
        m = cv2.getRotationMatrix2D((grey.shape[1] / 2, grey.shape[0] / 2), angle, 1.0)
        grey = cv2.warpAffine(grey, m, (grey.shape[1], grey.shape[0]), flags=cv2.INTER_LINEAR, borderValue=0)
    side = rng.uniform(300, 460)
    k = side / max(grey.shape)
    grey = cv2.resize(
        grey,
        (max(32, round(grey.shape[1] * k)), max(32, round(grey.shape[0] * k))),
        interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC,
    )
    rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    hh, ww = grey.shape
    font = cv2.FONT_HERSHEY_SIMPLEX
    text = (235, 235, 235)
    cv2.putText(rgb, f"W:{window[1]:.0f} L:{window[0]:.0f}", (6, hh - 8), font, 0.42, text, 1, cv2.LINE_AA)
    cv2.putText(rgb, label or "SYNTH HOSP", (6, 16), font, 0.42, text, 1, cv2.LINE_AA)
    cv2.putText(rgb, "R", (4, hh // 2), font, 0.5, text, 1, cv2.LINE_AA)
    cv2.putText(
        rgb, f"{rng.integers(1, 9)}.{rng.integers(0, 9)}x", (ww - 40, 16), font, 0.4, text, 1, cv2.LINE_AA
    )
    if "overlay" in tags:
        cx, cy = int(ww * rng.uniform(0.35, 0.65)), int(hh * rng.uniform(0.35, 0.65))
        cv2.arrowedLine(rgb, (cx - 45, cy - 40), (cx - 6, cy - 5), YELLOW, 2, cv2.LINE_AA, tipLength=0.3)
        cv2.circle(rgb, (cx + 30, cy + 20), int(rng.integers(14, 26)), GREEN, 2, cv2.LINE_AA)
        p, q = (cx - 50, cy + 45), (cx + 10, cy + 60)
        cv2.line(rgb, p, q, CYAN, 2, cv2.LINE_AA)
        cv2.putText(rgb, f"{rng.uniform(5, 40):.1f} mm", (q[0] + 4, q[1]), font, 0.45, YELLOW, 1, cv2.LINE_AA)
        cv2.putText(rgb, "ROI HU 32", (ww - 92, hh - 10), font, 0.4, RED, 1, cv2.LINE_AA)
    return rgb


def montage(panels: Sequence[Any], rng: np.random.Generator) -> Any:
    """Panels side by side (2) or 2 x 2 (4), black gutters, a letter in each panel."""
    side = int(rng.integers(220, 300))
    tiles = []
    for k, panel in enumerate(panels):
        tile = cv2.resize(panel, (side, side), interpolation=cv2.INTER_AREA)
        cv2.putText(
            tile,
            "ABCD"[k],
            (side - 24, side - 10),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.7,
            (255, 255, 255),
            2,
            cv2.LINE_AA,
        )
        tiles.append(tile)
    gap = int(rng.integers(4, 10))
    pad = lambda t: cv2.copyMakeBorder(t, gap, gap, gap, gap, cv2.BORDER_CONSTANT, value=(0, 0, 0))  # noqa: E731
    tiles = [pad(t) for t in tiles]
    if len(tiles) == 2:
        return np.hstack(tiles)
    return np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])


def jpeg(rgb: Any, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(buf)


# ------------------------------------------------------------------------------------------------- report


@dataclass
class Ref:
    """One reference as written in a sentence, with its truth."""

    raw: str
    method: str  # explicit | figure
    truth: str | None
    tags: list[str]
    figure: int | None = None
    panel: str | None = None
    position: tuple[int, int] | None = None  # (series, instance) as written, for explicit references


@dataclass
class Sentence:
    text: str
    refs: list[Ref]
    role: str = "body"


@dataclass
class FigureSpec:
    number: int
    image: bytes
    caption: str
    size: tuple[int, int]


SITES_ZH = [
    "右肺上叶",
    "左肺下叶",
    "右肺中叶",
    "左肺上叶舌段",
    "右肺下叶背段",
    "纵隔内",
    "左侧肾上腺区",
    "右侧顶叶",
    "左侧基底节区",
    "右侧额叶",
]
SITES_EN = [
    "right upper lobe",
    "left lower lobe",
    "right middle lobe",
    "lingula",
    "superior segment of the right lower lobe",
    "mediastinum",
    "left adrenal region",
    "right parietal lobe",
    "left basal ganglia",
    "right frontal lobe",
]
FINDINGS_ZH = [
    "见一结节",
    "见斑片状高密度影",
    "见类圆形低密度灶",
    "见条索状影",
    "见磨玻璃密度影",
    "见异常信号灶",
]
FINDINGS_EN = [
    "a nodule",
    "a patchy opacity",
    "a rounded low-density focus",
    "a linear band",
    "a ground-glass opacity",
    "an abnormal signal focus",
]
FILLER_ZH = [
    "双侧胸廓对称，气管居中。",
    "心影大小形态未见明显异常。",
    "双侧胸腔未见积液。",
    "所见骨质未见明显破坏。",
    "纵隔内未见明显肿大淋巴结。",
    "肝脏形态大小正常，密度均匀。",
    "建议结合临床，必要时随访复查。",
    "余未见明显异常。",
    "扫描范围内诸骨未见异常。",
]
FILLER_EN = [
    "The trachea is midline and the thorax is symmetric.",
    "Heart size is within normal limits.",
    "There is no pleural effusion.",
    "No destructive osseous lesion is seen.",
    "No enlarged mediastinal lymph nodes.",
    "Clinical correlation and follow-up are advised.",
    "The remaining structures are unremarkable.",
]

FILLER_HEAD_ZH = [
    "脑室系统未见扩张，中线结构居中。",
    "脑沟脑裂未见增宽。",
    "颅骨未见明显异常。",
    "余未见明显异常。",
]
FILLER_HEAD_EN = [
    "The ventricles are not dilated and the midline is not shifted.",
    "The sulci are not widened.",
    "The calvarium is intact.",
    "The remaining structures are unremarkable.",
]


class Writer:
    """Sentence text for one report: Chinese, English or both; each sentence unique (a size in it differs)."""

    def __init__(self, lang: str, rng: np.random.Generator, head: bool = False) -> None:
        self.lang, self.rng, self.count = lang, rng, 0
        self.sites = [7, 8, 9] if head else [0, 1, 2, 3, 4, 5]
        self.fig_word = "Figure" if rng.random() < 0.6 else "Image"

    def site(self) -> int:
        return self.sites[int(self.rng.integers(0, len(self.sites)))]

    def _size(self) -> str:
        self.count += 1
        return f"{3 + self.count * 1.3 + self.rng.uniform(0, 1):.1f}"

    def finding(
        self, zh_ref: str, en_ref: str, cue_zh: str = "", cue_en: str = "", prefix: str = ""
    ) -> list[tuple[str, str]]:
        """(language, sentence) pairs; the references are embedded by the caller-given strings."""
        k = self.site()
        f = int(self.rng.integers(0, len(FINDINGS_ZH)))
        size = self._size()
        zh = f"{prefix}{cue_zh}{SITES_ZH[k]}{FINDINGS_ZH[f]}，大小约{size}mm（{zh_ref}）。" if zh_ref else ""
        en = (
            f"{cue_en}{FINDINGS_EN[f] if cue_en else FINDINGS_EN[f].capitalize()} of {size} mm in the "
            f"{SITES_EN[k]} ({en_ref})."
            if en_ref
            else ""
        )
        out = []
        if self.lang in ("zh", "bi") and zh:
            out.append(("zh", zh))
        if self.lang in ("en", "bi") and en:
            out.append(("en", en))
        return out


def _font() -> Any:
    return pymupdf.Font(fontfile=FONT_FILE)


class Layout:
    """Flows paragraphs and figures down one or two columns of A4 pages."""

    def __init__(self, doc: Any, columns: int) -> None:
        self.doc, self.columns = doc, columns
        self.margin, self.gutter = 48.0, 18.0
        self.page: Any = None
        self.col = 0
        self.y = 0.0
        self.new_page()

    def new_page(self) -> None:
        self.page = self.doc.new_page(width=595, height=842)
        self.page.insert_font(fontname="noto", fontfile=FONT_FILE)
        self.col, self.y = 0, self.margin

    @property
    def width(self) -> float:
        return (595 - 2 * self.margin - (self.columns - 1) * self.gutter) / self.columns

    def x0(self) -> float:
        return self.margin + self.col * (self.width + self.gutter)

    def advance(self) -> None:
        if self.col + 1 < self.columns:
            self.col, self.y = self.col + 1, self.top
        else:
            self.new_page()
            self.top = self.margin

    top = 48.0

    def full_width(self, text: str, size: float, gap: float = 6.0) -> None:
        rect = pymupdf.Rect(self.margin, self.y, 595 - self.margin, 842 - self.margin)
        rest = self.page.insert_textbox(rect, text, fontname="noto", fontsize=size, lineheight=1.3)
        self.y = 842 - self.margin - rest + gap
        self.top = self.y

    def para(self, text: str, size: float = 10.0, gap: float = 7.0) -> None:
        for _ in range(3):
            rect = pymupdf.Rect(self.x0(), self.y, self.x0() + self.width, 842 - self.margin)
            rest = self.page.insert_textbox(rect, text, fontname="noto", fontsize=size, lineheight=1.35)
            if rest >= 0:
                self.y = 842 - self.margin - rest + gap
                return
            self.advance()
        raise RuntimeError(f"paragraph does not fit: {text[:40]!r}")

    def figure(self, fig: FigureSpec, size: float = 9.0) -> None:
        w = min(self.width, 250.0 if self.columns == 1 else self.width)
        h = w * fig.size[1] / fig.size[0]
        if self.y + h + 30 > 842 - self.margin:
            self.advance()
        x = self.x0()
        self.page.insert_image(pymupdf.Rect(x, self.y, x + w, self.y + h), stream=fig.image)
        self.y += h + 3
        rect = pymupdf.Rect(x, self.y, x + max(w, min(self.width, 300.0)), self.y + 40)
        rest = self.page.insert_textbox(rect, fig.caption, fontname="noto", fontsize=size, lineheight=1.3)
        self.y += 40 - rest + 8


def build_pdf(
    header: list[str], body: list[str], figures: list[FigureSpec], columns: int, figures_page2: bool
) -> bytes:
    doc = pymupdf.open()
    lay = Layout(doc, columns)
    lay.full_width(header[0], 14.0, 4)
    lay.full_width(header[1], 9.0, 10)
    if columns == 2:  # balanced columns: the second half of the findings starts the right column
        half = max(1, len(body) // 2)
        for text in body[:half]:
            lay.para(text)
        lay.advance()
        for text in body[half:]:
            lay.para(text)
    else:
        for text in body:
            lay.para(text)
    if figures_page2 and lay.page.number == 0:
        lay.new_page()
        lay.top = lay.margin
    for fig in figures:
        lay.figure(fig)
    lay.para("报告医师 Reporting radiologist: Synthetic^Reader    审核 Verified", 8.5, 0)
    stamp = "D:20250101090000+08'00'"
    doc.set_metadata(
        {"title": "Radiology report", "producer": "align suite", "creationDate": stamp, "modDate": stamp}
    )
    data: bytes = doc.tobytes(garbage=3, deflate=True, no_new_id=True)
    doc.close()
    return data


def scan_pdf(pdf: bytes, rng: np.random.Generator) -> bytes:
    """The report printed and scanned: pages at 200–300 dpi, tilted, noisy, blurred, JPEG, image-only."""
    src = pymupdf.open(stream=pdf, filetype="pdf")
    out = pymupdf.open()
    for page in src:
        dpi = int(rng.integers(200, 301))
        pix = page.get_pixmap(dpi=dpi, alpha=False)
        img = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width, pix.n)[:, :, :3]
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        angle = float(rng.uniform(-0.6, 0.6))
        m = cv2.getRotationMatrix2D((grey.shape[1] / 2, grey.shape[0] / 2), angle, 1.0)
        grey = cv2.warpAffine(grey, m, (grey.shape[1], grey.shape[0]), borderValue=250)
        grey = cv2.GaussianBlur(grey, (0, 0), float(rng.uniform(0.5, 0.9)))
        grey = grey * rng.uniform(0.9, 0.97) + rng.uniform(4, 14) + rng.normal(0, 4, grey.shape)
        grey = np.clip(grey, 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 86))])
        assert ok
        new = out.new_page(width=page.rect.width, height=page.rect.height)
        new.insert_image(new.rect, stream=bytes(buf))
    src.close()
    data: bytes = out.tobytes(garbage=3, deflate=True, no_new_id=True)
    out.close()
    return data


# -------------------------------------------------------------------------------------------------- cases


@dataclass
class Study:
    kind: str
    series: list[SeriesSpec]
    anatomy: Anatomy | None = None
    pairs: dict[int, int] = field(default_factory=dict)  # lung series number -> mediastinal twin

    def by_number(self, n: int) -> SeriesSpec:
        return next(s for s in self.series if s.number == n)

    def image_series(self) -> list[SeriesSpec]:
        return self.series


def build_study(
    kind: str, rng: np.random.Generator, uids: Uids, large: bool = False, tiny: bool = False
) -> Study:
    """The study of one case; ``tiny`` (for tests) keeps every series to a few small slices."""
    anatomy = Anatomy.random(rng)
    side = 96 if tiny else 256
    if kind in ("ct-recon", "ct-thin"):
        n = 2000 // 2 if large else int(rng.integers(100, 301))
        n = 12 if tiny else n
        spacing = 0.625 if large else float(rng.choice([0.625, 0.8, 1.0, 1.25]))
        z0 = float(rng.uniform(-40, 0))
        hu = chest_volume(anatomy, n, side, spacing, rng, z0=z0 + 20)
        if kind == "ct-thin":
            vals = reconstruct(hu, "soft", rng)
            return Study(
                kind,
                [
                    make_series(
                        uids,
                        2,
                        "CT",
                        f"Chest {spacing} mm",
                        vals,
                        spacing=spacing,
                        thickness=spacing,
                        window=MEDIASTINUM,
                        z0=-(z0 + 20),
                        kernel="STANDARD",
                    )
                ],
                anatomy,
            )
        lung = reconstruct(hu, "lung", rng)
        soft = reconstruct(hu, "soft", rng)
        return Study(
            kind,
            [
                make_series(
                    uids,
                    3,
                    "CT",
                    f"Chest {spacing} mm lung",
                    lung,
                    spacing=spacing,
                    thickness=spacing,
                    window=LUNG,
                    z0=-(z0 + 20),
                    kernel="LUNG",
                ),
                make_series(
                    uids,
                    4,
                    "CT",
                    f"Chest {spacing} mm mediastinum",
                    soft,
                    spacing=spacing,
                    thickness=spacing,
                    window=MEDIASTINUM,
                    z0=-(z0 + 20),
                    kernel="SOFT",
                ),
            ],
            anatomy,
            pairs={3: 4},
        )
    if kind == "ct-thick":
        n = 24 if tiny else int(rng.integers(160, 241))
        hu = chest_volume(anatomy, n, side, 1.25, rng)
        soft = slab(reconstruct(hu, "soft", rng), 4)
        lung = reconstruct(hu, "lung", rng)
        return Study(
            kind,
            [
                make_series(
                    uids,
                    2,
                    "CT",
                    "Chest 5 mm",
                    soft,
                    spacing=5.0,
                    thickness=5.0,
                    window=MEDIASTINUM,
                    z0=-1.875,
                ),
                make_series(
                    uids,
                    5,
                    "CT",
                    "Chest 1.25 mm lung",
                    lung,
                    spacing=1.25,
                    thickness=1.25,
                    window=LUNG,
                    kernel="LUNG",
                ),
            ],
            anatomy,
        )
    if kind == "mr":
        n = 6 if tiny else int(rng.integers(20, 31))
        labels = head_labels(rng, n, side, 5.0)
        series = []
        for k, (contrast, win) in enumerate(
            (("T1", (600, 1000)), ("T2", (900, 1800)), ("FLAIR", (800, 1500))), start=2
        ):
            series.append(
                make_series(
                    uids,
                    k,
                    "MR",
                    f"AX {contrast}",
                    mr_series(labels, contrast, rng),
                    spacing=5.0,
                    thickness=5.0,
                    window=win,
                    body_part="HEAD",
                )
            )
        return Study(kind, series, anatomy)
    if kind == "dx":
        mod = "DX" if rng.random() < 0.5 else "CR"
        pa = radiograph(anatomy, rng, lateral=False, rows=128 if tiny else 512)
        lat = radiograph(anatomy, rng, lateral=True, rows=128 if tiny else 512)
        return Study(
            kind,
            [
                make_series(uids, 1, mod, "Chest PA", [pa], spacing=1, thickness=0, window=(2000, 3600)),
                make_series(uids, 2, mod, "Chest LAT", [lat], spacing=1, thickness=0, window=(2000, 3600)),
            ],
            anatomy,
        )
    raise ValueError(kind)


def _chest_only(study: Study) -> Study:
    """Figures and references are of the chest, not of the neck or upper abdomen a long series also covers."""
    for spec in study.series:
        if spec.modality != "CT" or len(spec.slices) < 6:
            continue
        # chest_volume puts the lung apex at 0 mm and the bases at 300 mm; positions run downwards.
        top = -spec.slices[0].position[2]
        extent = len(spec.slices) * spec.spacing
        lo, hi = (30.0 - top) / extent, (270.0 - top) / extent
        spec.pick = (min(max(lo, 0.05), 0.5), max(min(hi, 0.95), 0.55))
    return study


def neighbours(spec: SeriesSpec, sl: Slice) -> list[str]:
    return [s.uid for s in spec.slices if abs(s.instance - sl.instance) == 1]


FIGURE_VARIATIONS = {
    "ct-recon": [
        "plain",
        "window",
        "crop40",
        "window",
        "overlay",
        "montage2",
        "window",
        "rotate",
        "montage4",
        "window",
        "decoy-other",
        "decoy-prior",
    ],
    "ct-thin": ["plain", "crop40", "rotate", "overlay", "montage2", "decoy-other", "decoy-prior"],
    "ct-thick": ["plain", "overlay", "crop40", "rotate", "montage2", "decoy-other"],
    "mr": ["plain", "crop40", "overlay", "rotate", "montage2", "montage4", "decoy-other"],
    "dx": ["plain", "overlay", "crop40", "rotate", "montage2", "decoy-comparison", "decoy-prior"],
}


def _pick_slice(spec: SeriesSpec, rng: np.random.Generator) -> Slice:
    n = len(spec.slices)
    lo, hi = (0, n) if n < 6 else (int(n * spec.pick[0]), int(n * spec.pick[1]))
    return spec.slices[int(rng.integers(lo, max(lo + 1, hi)))]


def build_case(index: int, seed: int, *, large: bool = False, tiny: bool = False) -> dict[str, Any]:
    """Everything of one case in memory: the study, the report's pieces and the truth."""
    rng = np.random.default_rng([seed, index, 8])
    uids = Uids(seed, index, "large" if large else "")
    kind = "ct-recon" if large else KINDS[index % len(KINDS)]
    lang = LANGS[index % len(LANGS)]
    columns = 2 if (index // 2) % 2 == 1 else 1
    study = _chest_only(build_study(kind, rng, uids, large=large, tiny=tiny))
    writer = Writer(lang, rng, head=kind == "mr")
    sentences: list[Sentence] = []
    figures: list[FigureSpec] = []
    base_tags = [f"kind:{kind}", f"lang:{lang}", f"columns:{columns}"]
    variations = FIGURE_VARIATIONS[kind]
    count = 6 if large else int(rng.integers(1, 5))
    # Each case of a kind starts five variations further on (coprime to the list lengths): even shares.
    occurrence = (index // len(KINDS)) * KINDS.count(kind) + KINDS[: index % len(KINDS)].count(kind)
    start = (occurrence * 5) % len(variations)
    chosen = [variations[(start + k) % len(variations)] for k in range(count)]
    if not large and index % 4 == 3 and not any(v.startswith("decoy") for v in chosen):
        chosen[-1] = next(v for v in variations if v.startswith("decoy"))
    figures_page2 = index % 3 == 2 or count >= 4
    page_tag = "page:2" if figures_page2 else "page:1"
    other = Anatomy.random(np.random.default_rng([seed, index, 99]))
    fig_word_en = writer.fig_word
    windows_seen = 0
    for number, variation in enumerate(chosen, start=1):
        tags = [*base_tags, page_tag, f"fig:{variation}"]
        caption_extra_zh, caption_extra_en = "", ""
        if variation.startswith("montage"):
            panels_n = 2 if variation == "montage2" else 4
            specs = [s for s in study.series if s.modality != "SR"]
            picked: list[tuple[SeriesSpec, Slice]] = []
            for k in range(panels_n):
                spec = specs[k % len(specs)] if kind in ("dx", "mr") else specs[0]
                sl = _pick_slice(spec, rng)
                for _attempt in range(50):  # distinct slices, a few apart, where the series allows
                    if len(spec.slices) <= 8 or not any(
                        sl.uid == p[1].uid or (p[0] is spec and abs(p[1].instance - sl.instance) < 4)
                        for p in picked
                    ):
                        break
                    sl = _pick_slice(spec, rng)
                picked.append((spec, sl))
            shots = [screenshot(sl.values, sl.window, rng, ["plain"]) for _, sl in picked]
            img = montage(shots, rng)
            letters = "ABCD"[:panels_n]
            two_side = panels_n == 2 and lang != "zh" and rng.random() < 0.5
            if two_side:
                # "Figure 3, left and right": one sentence naming both panels.
                raw = f"{fig_word_en} {number}, left and right"
                text = f"Bilateral findings of {writer._size()} mm are shown in {raw}."
                refs = [
                    Ref(
                        f"{fig_word_en} {number}, {side}",
                        "figure",
                        sl.uid,
                        [*tags, "form:left-right", f"panel:{pl}"],
                        number,
                        pl,
                    )
                    for side, pl, (_, sl) in zip(("left", "right"), letters, picked, strict=True)
                ]
                sentences.append(Sentence(text, refs))
            else:
                spaced = rng.random() < 0.4  # "图 2A" as well as "图2A"
                zh_panel = f"图 {number}" if spaced else f"图{number}"
                for pl, (_spec, sl) in zip(letters, picked, strict=True):
                    for lng, text in writer.finding(f"{zh_panel}{pl}", f"Fig. {number}{pl}"):
                        raw = f"{zh_panel}{pl}" if lng == "zh" else f"Fig. {number}{pl}"
                        sentences.append(
                            Sentence(
                                text,
                                [
                                    Ref(
                                        raw,
                                        "figure",
                                        sl.uid,
                                        [*tags, f"form:panel-{lng}", f"panel:{pl}"],
                                        number,
                                        pl,
                                    )
                                ],
                            )
                        )
            truth_panels = [(pl, sl.uid) for pl, (_, sl) in zip(letters, picked, strict=True)]
            caption_extra_zh = "（" + "、".join(f"{pl}" for pl, _ in truth_panels) + "）"
            caption_extra_en = f" ({', '.join(pl for pl, _ in truth_panels)})"
        else:
            truth: str | None
            cue_zh = cue_en = ""
            if variation.startswith("decoy"):
                if variation == "decoy-other" or (variation == "decoy-prior" and kind != "dx"):
                    src_anat = other if variation == "decoy-other" else _prior(study.anatomy, rng)
                    ref_spec = study.series[0]
                    if kind == "mr":
                        vals = mr_series(
                            head_labels(np.random.default_rng([seed, index, 98]), 12, 256, 5.0), "T2", rng
                        )[6]
                        win = (900.0, 1800.0)
                    else:
                        z = float(rng.uniform(40, 220))
                        vals = reconstruct(
                            chest_volume(src_anat, 1, 256, ref_spec.spacing, rng, z0=z), "soft", rng
                        )[0]
                        win = MEDIASTINUM if rng.random() < 0.6 else LUNG
                else:  # a comparison radiograph of another patient, or this patient's prior radiograph
                    src_anat = other if variation == "decoy-comparison" else _prior(study.anatomy, rng)
                    vals = radiograph(src_anat, rng, lateral=False)
                    win = (2000.0, 3600.0)
                img = screenshot(vals, win, rng, ["plain"])
                truth = None
                worded = index % 2 == 0
                tags += ["decoy", "decoy:worded" if worded else "decoy:unworded"]
                if worded:
                    cue_zh, cue_en = (
                        "与2024年外院片比较，",
                        "Compared with the prior outside study from 2024, ",
                    )
            else:
                spec = study.series[0]
                win = spec.slices[0].window
                if variation == "window" and kind == "ct-recon":
                    # Window and cue in rotation, so that each combination gets its share.
                    turn = occurrence * 2 + windows_seen
                    windows_seen += 1
                    which = ["lung", "mediastinal", "bone"][turn % 3]
                    spec = study.by_number(3 if which == "lung" else 4)
                    win = {"lung": LUNG, "mediastinal": MEDIASTINUM, "bone": BONE}[which]
                    cued = (occurrence + windows_seen) % 2 == 0
                    tags += [f"window:{which}", "cue" if cued else "no-cue"]
                    if cued:
                        cue_zh = {"lung": "肺窗示", "mediastinal": "纵隔窗示", "bone": "骨窗示"}[which]
                        cue_en = {
                            "lung": "On the lung window, ",
                            "mediastinal": "On the mediastinal window, ",
                            "bone": "On the bone window, ",
                        }[which]
                elif kind in ("mr", "dx", "ct-recon", "ct-thick"):
                    spec = study.series[int(rng.integers(0, len(study.series)))]
                    win = spec.slices[0].window
                    if kind == "ct-recon":
                        tags.append("window:" + ("lung" if spec.number == 3 else "mediastinal"))
                if variation == "plain" and rng.random() < 0.5 and spec.modality in ("CT", "MR"):
                    c, w = win
                    win = (
                        c + rng.uniform(-0.1, 0.1) * w,
                        w * rng.uniform(0.7, 1.3),
                    )  # the reader's own tweak
                sl = _pick_slice(spec, rng)
                img = screenshot(sl.values, win, rng, [variation])
                truth = sl.uid
                tags += [f"series:{spec.description}"]
            forms = [("图{n}", "zh"), ("见图{n}", "zh"), ("附图{n}", "zh"), ("图 {n}", "zh")]
            zh_form = forms[int(rng.integers(0, len(forms)))][0].format(n=number)
            en_form = f"Fig. {number}" if rng.random() < 0.5 else f"{fig_word_en} {number}"
            for lng, text in writer.finding(zh_form, en_form, cue_zh, cue_en.capitalize() if cue_en else ""):
                raw = zh_form if lng == "zh" else en_form
                form = "form:" + (
                    {"图": "tu", "见": "jiantu", "附": "futu"}.get(raw[0], "fig")
                    if lng == "zh"
                    else raw.split()[0].lower().rstrip(".")
                )
                if raw.startswith("图 "):
                    form = "form:tu-space"
                sentences.append(Sentence(text, [Ref(raw, "figure", truth, [*tags, form], number)]))
        quality = int(rng.integers(70, 93))
        jpg = jpeg(img, quality)
        cap_zh = f"图{number}  {'对比片' if variation.startswith('decoy') else '病灶'}{caption_extra_zh}"
        what = "Comparison image" if variation.startswith("decoy") else "Lesion"
        cap_en = f"{fig_word_en if lang == 'en' else 'Figure'} {number}. {what}{caption_extra_en}"
        caption = (
            cap_zh if lang == "zh" else cap_en if lang == "en" else f"{cap_zh} / {cap_en.split('. ', 1)[1]}"
        )
        figures.append(FigureSpec(number, jpg, caption, (img.shape[1], img.shape[0])))
    # "Figs. 2–3": one sentence, two figures (when both are single images of this study).
    singles = [
        s.refs[0] for s in sentences if len(s.refs) == 1 and s.refs[0].panel is None and s.refs[0].truth
    ]
    by_fig = {r.figure: r for r in singles}
    for a in sorted(by_fig):
        if a + 1 in by_fig and lang != "zh" and rng.random() < 0.7:
            ra, rb = by_fig[a], by_fig[a + 1]
            text = (
                f"Both lesions, {writer._size()} mm and {writer._size()} mm, are shown in Figs. {a}–{a + 1}."
            )
            sentences.append(
                Sentence(
                    text,
                    [
                        Ref(f"Figs. {a}–{a + 1}", "figure", ra.truth, [*base_tags, "form:figs-range"], a),
                        Ref(f"Figs. {a}–{a + 1}", "figure", rb.truth, [*base_tags, "form:figs-range"], a + 1),
                    ],
                )
            )
            break
    # A reference to a figure that is not in the report.
    if index % 3 == 0:
        missing = count + 1 + int(rng.integers(0, 3))
        zh_m, en_m = f"见图{missing}", f"Figure {missing}"
        for lng, text in writer.finding(zh_m, en_m):
            sentences.append(
                Sentence(
                    text,
                    [
                        Ref(
                            zh_m if lng == "zh" else en_m,
                            "figure",
                            None,
                            [*base_tags, "missing", "missing:figure"],
                            missing,
                        )
                    ],
                )
            )
    # Explicit positions, in rotating forms, some pointing at nothing.
    form_names = list(POSITION_FORMS)
    n_explicit = 2 if large else int(rng.integers(2, 5))
    for k in range(n_explicit):
        name = form_names[(index * 2 + k) % len(form_names)]
        if k == n_explicit - 1 and index % 2 == 1:
            spec = study.series[-1]
            s_no, i_no, truth = spec.number, len(spec.slices) + int(rng.integers(5, 40)), None
            extra = ["missing", "missing:image"]
        else:
            spec = study.series[int(rng.integers(0, len(study.series)))]
            sl = _pick_slice(spec, rng)
            s_no, i_no, truth, extra = spec.number, sl.instance, sl.uid, []
        raw = POSITION_FORMS[name].format(s=s_no, i=i_no)
        tags = [*base_tags, f"form:{name}", *extra]
        lng_pick = "zh" if lang == "zh" or (lang == "bi" and k % 2 == 0) else "en"
        if lng_pick == "zh":
            text = f"{SITES_ZH[writer.site()]}另见小结节，约{writer._size()}mm，见{raw}。"
        else:
            text = f"A further small nodule of {writer._size()} mm is seen on {raw}."
        sentences.append(Sentence(text, [Ref(raw, "explicit", truth, tags, position=(s_no, i_no))]))
    # "IMG 45" is a position in a study with a single image series.
    if len(study.series) == 1 and not large:
        spec = study.series[0]
        sl = _pick_slice(spec, rng)
        raw = f"IMG {sl.instance}"
        text = (
            f"The lesion of {writer._size()} mm is best seen on {raw}."
            if lang != "zh"
            else f"病灶约{writer._size()}mm，见{raw}。"
        )
        sentences.append(
            Sentence(
                text,
                [Ref(raw, "explicit", sl.uid, [*base_tags, "form:img"], position=(spec.number, sl.instance))],
            )
        )
    order = list(range(len(sentences)))
    rng.shuffle(order)
    filler_zh, filler_en = (FILLER_HEAD_ZH, FILLER_HEAD_EN) if kind == "mr" else (FILLER_ZH, FILLER_EN)
    fillers = (
        filler_zh
        if lang == "zh"
        else filler_en
        if lang == "en"
        else [f"{a}{b}" for a, b in zip(filler_zh, filler_en, strict=False)]
    )
    body: list[str] = []
    chunk: list[str] = []
    for pos, k in enumerate(order):
        chunk.append(sentences[k].text)
        if len(chunk) >= 2 or pos == len(order) - 1:
            chunk.append(fillers[int(rng.integers(0, len(fillers)))])
            body.append(("" if lang == "zh" else " ").join(chunk))
            chunk = []
    heading = {"zh": "检查所见：", "en": "FINDINGS:", "bi": "检查所见 / FINDINGS:"}[lang]
    impression = {
        "zh": "诊断意见：考虑良性病变可能，建议随访。",
        "en": "IMPRESSION: Probably benign; follow-up advised.",
        "bi": "诊断意见 / IMPRESSION：考虑良性病变可能。Probably benign.",
    }[lang]
    body = [heading, *body, impression]
    header = [
        {
            "zh": "合成医院放射科诊断报告",
            "en": "Synthetic Hospital Radiology Report",
            "bi": "合成医院放射科诊断报告 Radiology Report",
        }[lang],
        f"ID: SYN{seed:02d}{index:03d}   检查 Exam: {kind}   Accession A{seed:02d}{index:04d}",
    ]
    for fig in figures:
        sentences.append(Sentence(fig.caption, [], role="caption"))
    return {
        "index": index,
        "kind": kind,
        "lang": lang,
        "columns": columns,
        "study": study,
        "sentences": sentences,
        "figures": figures,
        "header": header,
        "body": body,
        "figures_page2": figures_page2,
        "uids": uids,
        "rng": rng,
    }


def _prior(anatomy: Anatomy | None, rng: np.random.Generator) -> Anatomy:
    """The same patient a year earlier: the same body, other nodules, another table position."""
    assert anatomy is not None
    nods = [
        (x, y, z, r * rng.uniform(0.4, 0.8), hu)
        for x, y, z, r, hu in anatomy.nodules[: max(1, len(anatomy.nodules) // 2)]
    ]
    return Anatomy(
        anatomy.body,
        anatomy.lung_r,
        anatomy.heart,
        nods,
        shift=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.03, 0.03))),
    )


def write_case(
    root: Path, index: int, seed: int, *, large: bool = False, scanned: bool = True, tiny: bool = False
) -> Path:
    """Generate case ``index`` under ``root`` (skipped when its truth.json of this suite version exists).

    ``tiny`` (for tests) writes the same report and truth over a study of a few small slices per series.
    """
    name = f"large-{seed:02d}" if large else f"{'tiny' if tiny else 'case'}-{seed:02d}-{index:03d}"
    folder = root / name
    truth_path = folder / "truth.json"
    if truth_path.is_file():
        old = json.loads(truth_path.read_text())
        if old.get("suite_version") == SUITE_VERSION and (
            old.get("scanned_report") is not None or not scanned
        ):
            return folder
    case = build_case(index, seed, large=large, tiny=tiny)
    study: Study = case["study"]
    uids: Uids = case["uids"]
    folder.mkdir(parents=True, exist_ok=True)
    info = {
        "study_uid": uids("study"),
        "frame_uid": uids("frame"),
        "date": "20250101",
        "accession": f"A{seed:02d}{index:04d}",
        "patient_name": f"Synthetic^Patient{index:03d}",
        "patient_id": f"SYN{seed:02d}{index:03d}",
        "description": case["kind"],
    }
    for spec in study.series:
        write_series(spec, info, folder / "dicom")
    pdf = build_pdf(case["header"], case["body"], case["figures"], case["columns"], case["figures_page2"])
    (folder / "report.pdf").write_bytes(pdf)
    scan_name = None
    if scanned:
        scan_name = "report-scan.pdf"
        (folder / scan_name).write_bytes(scan_pdf(pdf, case["rng"]))
    by_uid = {sl.uid: (spec, sl) for spec in study.series for sl in spec.slices}
    refs = []
    for s_index, sentence in enumerate(case["sentences"]):
        for ref in sentence.refs:
            nb: list[str] = []
            series_uid = None
            if ref.truth is not None:
                spec, sl = by_uid[ref.truth]
                nb, series_uid = neighbours(spec, sl), spec.uid
            refs.append(
                {
                    "sentence": s_index,
                    "raw": ref.raw,
                    "method": ref.method,
                    "figure": ref.figure,
                    "panel": ref.panel,
                    "position": list(ref.position) if ref.position else None,
                    "sop_instance_uid": ref.truth,
                    "series_instance_uid": series_uid,
                    "neighbours": nb,
                    "tags": ref.tags,
                }
            )
    manifest = {
        "suite_version": SUITE_VERSION,
        "seed": seed,
        "index": index,
        "case": name,
        "kind": case["kind"],
        "lang": case["lang"],
        "columns": case["columns"],
        "figures_page2": case["figures_page2"],
        "study_instance_uid": info["study_uid"],
        "instances": sum(len(s.slices) for s in study.series),
        "series": [
            {
                "number": s.number,
                "uid": s.uid,
                "modality": s.modality,
                "description": s.description,
                "instances": len(s.slices),
                "thickness": s.thickness,
            }
            for s in study.series
        ],
        "report": "report.pdf",
        "scanned_report": scan_name,
        "sentences": [{"text": s.text, "role": s.role} for s in case["sentences"]],
        "figures": [{"number": f.number, "caption": f.caption} for f in case["figures"]],
        "references": refs,
    }
    tmp = truth_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
    tmp.replace(truth_path)
    return folder


def generate(
    root: Path,
    studies: int,
    seed: int,
    *,
    large: bool = False,
    scanned: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for index in range(studies):
        out.append(write_case(root, index, seed, scanned=scanned))
        if progress:
            progress(out[-1].name)
    if large:
        out.append(write_case(root, 0, seed, large=True, scanned=False))
        if progress:
            progress(out[-1].name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate the aligner benchmark's labelled studies.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--studies", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--large", action="store_true", help="also a 2,000-slice CT with a six-figure report")
    parser.add_argument("--no-scans", action="store_true", help="skip the scanned copies of the reports")
    args = parser.parse_args()
    generate(args.out, args.studies, args.seed, large=args.large, scanned=not args.no_scans, progress=print)


if __name__ == "__main__":
    main()
