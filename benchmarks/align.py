"""Quality benchmark of the aligner (a script, not a test): precision and recall per method, time per study.

Builds labelled cases: studies of two CT-like series (a smooth random volume, so adjacent slices look alike,
which are the distractors), with reports that cite explicit positions (some pointing at nothing) and figures
derived from instances with a crop, a rescale, another window, burnt-in text and arrows, and JPEG quality 50.
Some figures come from a different patient's volume: linking them anywhere is a false positive.

    .venv/bin/python benchmarks/align.py --studies 5 --instances 500 --figures 6
    .venv/bin/python benchmarks/align.py --dicom      # also time reading + rendering real DICOM files
    .venv/bin/python benchmarks/align.py --images-only  # instances as 8-bit images: no alternative windows

By default each instance comes as the ``align`` stage passes it: its own rendering plus its stored values
(HU, at the matcher's 128 px), so that figures are also compared under other windows
(``mappings/windows.yaml``).

Goals: precision ≥ 0.99 for explicit and figure links, recall ≥ 0.95, < 2 s per 500-instance study on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gateway.align import AlignOptions, InstanceInfo, Rendering, align
from gateway.imaging import GreyValues

SIZE = 256
VALUES_SIDE = 128  # as gateway/pipeline/stages/align.py keeps them


def volume(n: int, seed: int) -> list[np.ndarray]:
    r = np.random.default_rng(seed)
    axis = np.arange(SIZE)
    xx, yy = np.meshgrid(axis, axis)
    body = (((xx - SIZE / 2) / (SIZE * 0.45)) ** 2 + ((yy - SIZE / 2) / (SIZE * 0.35)) ** 2 < 1).astype(
        np.float32
    )
    blobs = [
        (
            r.uniform(30, SIZE - 30),
            r.uniform(30, SIZE - 30),
            r.uniform(0, n),
            r.uniform(3, 14),
            r.uniform(2, 6),
            r.uniform(-300, 400),
        )
        for _ in range(max(40, n // 3))
    ]
    out = []
    for z in range(n):
        img = -1000 + body * 1040
        for x, y, bz, s, sz, a in blobs:
            dz = (z - bz) / sz
            if abs(dz) > 3:
                continue
            img = img + (a * np.exp(-dz * dz / 2)) * np.outer(
                np.exp(-(((axis - y) / s) ** 2) / 2), np.exp(-(((axis - x) / s) ** 2) / 2)
            ).astype(np.float32)
        out.append((img + r.normal(0, 8, img.shape)).astype(np.int16))
    return out


def window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    return np.clip((hu.astype(np.float32) - (center - width / 2)) / width * 255, 0, 255).astype(np.uint8)


def derive_figure(hu: np.ndarray, r: np.random.Generator) -> np.ndarray:
    """A viewer screenshot: other window, crop, rescale, burnt-in text/arrow, JPEG 50."""
    img = window(hu, 40 * r.uniform(0.5, 1.5) + r.uniform(-40, 40), 400 * r.uniform(0.6, 1.6))
    h, w = img.shape
    fx, fy = r.uniform(0.6, 1.0), r.uniform(0.6, 1.0)
    cw, ch = int(w * fx), int(h * fy)
    x0, y0 = int(r.integers(0, w - cw + 1)), int(r.integers(0, h - ch + 1))
    img = img[y0 : y0 + ch, x0 : x0 + cw]
    scale = r.uniform(0.6, 1.6)
    img = cv2.resize(
        img, (max(16, int(cw * scale)), max(16, int(ch * scale))), interpolation=cv2.INTER_LINEAR
    )
    cv2.putText(img, "W:400 L:40", (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1)
    cv2.putText(img, "R", (img.shape[1] - 20, img.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 255, 2)
    c = (img.shape[1] // 2, img.shape[0] // 2)
    cv2.arrowedLine(img, (c[0] - 30, c[1] - 25), c, 255, 2)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def build_case(seed: int, instances: int, figures: int, explicit: int) -> dict[str, Any]:
    r = np.random.default_rng(seed)
    per = instances // 2
    vols = [volume(per, seed * 10 + 1), volume(instances - per, seed * 10 + 2)]
    infos, images, hus = [], {}, {}
    for s, vol in enumerate(vols, start=2):
        for i, hu in enumerate(vol, start=1):
            uid = f"1.2.999.{seed}.{s}.{i}"
            infos.append(
                InstanceInfo(
                    uid,
                    "1.2.840.10008.5.1.4.1.1.2",
                    f"1.2.999.{seed}.{s}",
                    s,
                    i,
                    "CT",
                    "CHEST",
                    rows=SIZE,
                    columns=SIZE,
                    window_center=40,
                    window_width=400,
                )
            )
            images[uid] = window(hu, 40, 400)
            hus[uid] = hu
    uids = list(images)
    paragraphs, truth, figs, fig_images = [], {}, [], {}
    other = volume(20, seed * 10 + 9)  # another patient's images: figures from here must not link
    for n in range(1, figures + 1):
        if n % 5 == 0:
            fig_images[f"figure-{n}.png"] = derive_figure(other[int(r.integers(0, len(other)))], r)
            truth[f"图{n}"] = None
        else:
            uid = uids[int(r.integers(0, len(uids)))]
            fig_images[f"figure-{n}.png"] = derive_figure(hus[uid], r)
            truth[f"图{n}"] = uid
        figs.append(
            {
                "label": f"figure:{n}",
                "number": n,
                "page": 1,
                "bbox": [0, 0, 1, 1],
                "caption": None,
                "artifact": f"figure-{n}.png",
                "media_type": "image/jpeg",
                "sha256": "",
                "width": 1,
                "height": 1,
            }
        )
    for k in range(explicit):
        if k % 4 == 3:
            series, inst = 9, 999  # cites nothing in the study
            truth_uid = None
        else:
            series, inst = 2 + k % 2, int(r.integers(1, per + 1))
            truth_uid = f"1.2.999.{seed}.{series}.{inst}"
        raw = f"Se {series} Im {inst}"
        truth[raw] = truth_uid
    for index, raw in enumerate(truth):
        text = f"病灶{index}见于（{raw}）。" if raw.startswith("Se") else f"结节{index}，见{raw}。"
        start = text.index(raw)
        if raw.startswith("Se"):
            s, i = raw[3:].split(" Im ")
            ref = {
                "kind": "position",
                "raw": raw,
                "label": None,
                "number": None,
                "series": int(s),
                "instance": int(i),
            }
        else:
            num = int(raw[1:])
            ref = {
                "kind": "figure",
                "raw": raw,
                "label": f"figure:{num}",
                "number": num,
                "series": None,
                "instance": None,
            }
        ref.update(start=start, end=start + len(raw))
        paragraphs.append(
            {
                "index": index,
                "text": text,
                "page": 1,
                "bbox": [0, 0, 1, 1],
                "section": "findings",
                "figure_refs": [ref],
            }
        )
    document = {
        "schema_version": "1.0",
        "source_kind": "pdf",
        "engine": {"name": "bench", "version": "1"},
        "status": None,
        "pages": [],
        "paragraphs": paragraphs,
        "figures": figs,
        "warnings": [],
    }
    return {
        "document": document,
        "infos": infos,
        "images": images,
        "figures": fig_images,
        "truth": truth,
        "hus": hus,
    }


def render_dicom_time(case: dict[str, Any]) -> float:
    """Seconds to read and render every instance of the case from DICOM files, as the align stage does."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from gateway.imaging import read_dataset, render_dataset, stored_values

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for uid, hu in case["hus"].items():
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            ds.file_meta.MediaStorageSOPInstanceUID = uid
            ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", uid
            ds.Rows, ds.Columns, ds.SamplesPerPixel = SIZE, SIZE, 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleSlope, ds.RescaleIntercept = 1, 0
            ds.WindowCenter, ds.WindowWidth = 40, 400
            ds.PixelData = hu.astype(np.int16).tobytes()
            path = Path(tmp) / f"{uid}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
        t = time.perf_counter()
        for path in paths:
            ds = read_dataset(path)
            render_dataset(ds)
            values = stored_values(ds)
            assert values is not None
            cv2.resize(values.values, (VALUES_SIDE, VALUES_SIDE), interpolation=cv2.INTER_AREA)
        return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--studies", type=int, default=5)
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--figures", type=int, default=6)
    parser.add_argument("--explicit", type=int, default=8)
    parser.add_argument("--dicom", action="store_true", help="also time reading + rendering DICOM files")
    parser.add_argument(
        "--images-only", action="store_true", help="no stored values: only each instance's own window"
    )
    args = parser.parse_args()
    cv2.setNumThreads(2)
    stats: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    times, dicom_times = [], []
    for seed in range(1, args.studies + 1):
        case = build_case(seed, args.instances, args.figures, args.explicit)
        rendered: dict[str, Any] = (
            case["images"]
            if args.images_only
            else {
                uid: Rendering(
                    image,
                    GreyValues(
                        cv2.resize(
                            case["hus"][uid].astype(np.float32),
                            (VALUES_SIDE, VALUES_SIDE),
                            interpolation=cv2.INTER_AREA,
                        )
                    ),
                )
                for uid, image in case["images"].items()
            }
        )
        t = time.perf_counter()
        result = align(
            case["document"],
            case["infos"],
            figure_images=case["figures"],
            instance_images=lambda xs, r=rendered: {i.sop_instance_uid: r[i.sop_instance_uid] for i in xs},
            options=AlignOptions(anatomy_cues=False),
        )
        times.append(time.perf_counter() - t)
        for link in result.links:
            method = "explicit" if link.image_ref and link.image_ref.startswith("Se") else "figure"
            expected = case["truth"][link.image_ref]
            s = stats[method]
            if expected is not None:
                s["positives"] += 1
            if link.resolved:
                s["linked"] += 1
                if link.sop_instance_uid == expected:
                    s["correct"] += 1
        if args.dicom:
            dicom_times.append(render_dicom_time(case))
    print(
        f"{args.studies} studies × {args.instances} instances, {args.figures} figures and {args.explicit} "
        "explicit references each (1 in 5 figures and 1 in 4 references have no true target)"
    )
    for method, s in stats.items():
        precision = s["correct"] / s["linked"] if s["linked"] else 1.0
        recall = s["correct"] / s["positives"] if s["positives"] else 1.0
        print(
            f"  {method:<9} precision {precision:.3f} ({s['correct']}/{s['linked']})  "
            f"recall {recall:.3f} ({s['correct']}/{s['positives']})"
        )
    print(
        f"  align time per study (images in memory): mean {np.mean(times):.2f} s, max {np.max(times):.2f} s"
    )
    if dicom_times:
        print(f"  + reading and rendering {args.instances} DICOM files: mean {np.mean(dicom_times):.2f} s")


if __name__ == "__main__":
    main()
