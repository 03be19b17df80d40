"""A chest CT phantom for the aligner's tests: thin slices whose vessels move from slice to slice.

Adjacent 0.625 mm slices share almost everything, as they do in a real thin-slice CT; another seed is
another patient with the same kind of anatomy (the look-alike a comparison image from elsewhere is).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gateway.align import InstanceInfo, Rendering
from gateway.imaging import GreyValues

CT = "1.2.840.10008.5.1.4.1.1.2"
LUNG = (-600.0, 1500.0)
MEDIASTINUM = (40.0, 400.0)


def chest(n: int, seed: int, size: int = 192, spacing: float = 0.625) -> list[np.ndarray]:
    """``n`` axial slices in HU."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c = size / 2
    ax, ay = size * r.uniform(0.40, 0.46), size * r.uniform(0.30, 0.36)
    vessels = [
        (
            c + r.choice([-1, 1]) * r.uniform(0.12, 0.32) * size,
            c + r.uniform(-0.18, 0.18) * size,
            r.uniform(-20, n * spacing + 20),
            *r.normal(0, 0.8, 2),
            r.uniform(0.6, 2.6),
            r.uniform(15, 60),
        )
        for _ in range(int(140 * max(1.0, n * spacing / 30.0)))
    ]
    vessels.sort(key=lambda v: v[2])
    starts = np.asarray([v[2] for v in vessels])
    # Mediastinal vessels and nodes: soft tissue in fat, what a mediastinal window shows.
    mediastinal = [
        (
            c + r.uniform(-0.07, 0.07) * size,
            c + r.uniform(-0.12, 0.12) * size,
            r.uniform(-10, n * spacing + 10),
            *r.normal(0, 0.5, 2),
            r.uniform(1.5, 4.0),
            r.uniform(8, 30),
        )
        for _ in range(int(40 * max(1.0, n * spacing / 30.0)))
    ]
    out = []
    for k in range(n):
        z = k * spacing
        img = np.full((size, size), -1000.0, np.float32)
        img[((xx - c) / ax) ** 2 + ((yy - c) / ay) ** 2 < 1] = 40
        for side in (-1, 1):
            la = size * (0.14 + 0.02 * np.sin(z / 40 + side) + 0.01 * np.sin(z / 97 + 2 * side))
            lb = size * (0.22 + 0.02 * np.cos(z / 50) + 0.015 * np.sin(z / 131))
            img[((xx - c - side * size * 0.2) / la) ** 2 + ((yy - c + 5) / lb) ** 2 < 1] = -850
        cv2.ellipse(img, (int(c), int(c)), (int(size * 0.09), int(size * 0.16)), 0, 0, 360, -100, -1)
        cv2.circle(img, (int(c), int(c + ay * 0.75)), int(size * 0.05), 700, -1)
        for x0, y0, z0, dx, dy, rad, length in mediastinal:
            t = z - z0
            if abs(t) <= length / 2:
                x, y = x0 + dx * t, y0 + dy * t
                cv2.circle(img, (round(x * 4), round(y * 4)), max(1, round(rad * 4)), 45, -1, shift=2)
        lo, hi = np.searchsorted(starts, [z - 30, z + 30])
        for x0, y0, z0, dx, dy, rad, length in vessels[lo:hi]:
            t = z - z0
            if abs(t) <= length / 2:
                x, y = x0 + dx * t, y0 + dy * t
                cv2.circle(img, (round(x * 4), round(y * 4)), max(1, round(rad * 4)), 60, -1, shift=2)
        img = cv2.GaussianBlur(img, (0, 0), 0.8) + r.normal(0, 12, img.shape).astype(np.float32)
        out.append(img)
    return out


def window(hu: np.ndarray, centre_width: tuple[float, float]) -> np.ndarray:
    c, w = centre_width
    return np.clip((hu - (c - w / 2)) / w * 255, 0, 255).astype(np.uint8)


def screenshot(
    hu: np.ndarray,
    *,
    shown: tuple[float, float] = LUNG,
    crop: tuple[float, float, float, float] = (0.1, 0.1, 0.9, 0.9),
    width: int = 320,
    rotate: float = 0.0,
    colour: bool = False,
    quality: int = 70,
) -> np.ndarray:
    """A viewer screenshot as RGB: window, crop (fractions), resize, rotation, text, overlays, JPEG."""
    img = window(hu, shown)
    h, w = img.shape
    x0, y0, x1, y1 = (round(crop[0] * w), round(crop[1] * h), round(crop[2] * w), round(crop[3] * h))
    img = img[y0:y1, x0:x1]
    img = cv2.resize(img, (width, round(width * img.shape[0] / img.shape[1])), interpolation=cv2.INTER_CUBIC)
    if rotate:
        m = cv2.getRotationMatrix2D((img.shape[1] / 2, img.shape[0] / 2), rotate, 1.0)
        img = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]))
    rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    cv2.putText(rgb, "W:1500 L:-600", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    if colour:
        cx, cy = rgb.shape[1] // 2, rgb.shape[0] // 2
        cv2.arrowedLine(rgb, (cx - 50, cy - 40), (cx - 4, cy - 4), (255, 255, 0), 3)
        cv2.circle(rgb, (cx + 25, cy + 15), 22, (255, 0, 0), 2)
        cv2.line(rgb, (cx - 40, cy + 50), (cx + 40, cy + 50), (0, 255, 0), 2)
        cv2.putText(rgb, "12.3 mm", (cx - 40, cy + 68), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 2)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@dataclass
class Study:
    infos: list[InstanceInfo]
    renderings: dict[str, Rendering]
    slices: list[np.ndarray]

    def images(self, xs: list[InstanceInfo]) -> dict[str, Rendering]:
        return {i.sop_instance_uid: self.renderings[i.sop_instance_uid] for i in xs}

    def uid(self, series: int, number: int) -> str:
        return f"1.2.7.{series}.{number}"


def study(n: int = 48, seed: int = 1, *, twins: bool = True, geometry: bool = True) -> Study:
    """A lung series (2) and, with ``twins``, a mediastinal reconstruction of the same slices (3)."""
    slices = chest(n, seed)
    infos: list[InstanceInfo] = []
    renderings: dict[str, Rendering] = {}
    recons = [(2, "Lung 0.625", LUNG, 0.0)] + ([(3, "Mediastinum 0.625", MEDIASTINUM, 1.2)] if twins else [])
    for series, description, own, blur in recons:
        for i, hu in enumerate(slices, start=1):
            values = cv2.GaussianBlur(hu, (0, 0), blur) if blur else hu
            uid = f"1.2.7.{series}.{i}"
            infos.append(
                InstanceInfo(
                    uid,
                    CT,
                    f"1.2.7.{series}",
                    series,
                    i,
                    "CT",
                    "CHEST",
                    series_description=description,
                    window_center=own[0],
                    window_width=own[1],
                    rows=values.shape[0],
                    columns=values.shape[1],
                    image_position=(0.0, 0.0, i * 0.625) if geometry else None,
                    image_orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0) if geometry else None,
                )
            )
            small = cv2.resize(values, (128, 128), interpolation=cv2.INTER_AREA)
            renderings[uid] = Rendering(window(values, own), GreyValues(small.astype(np.float32)))
    return Study(infos, renderings, slices)
