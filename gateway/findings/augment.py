"""Training-time augmentation of radiographs: random resized crop, small rotation, brightness and contrast.

Written with torch alone (there is no torchvision build here), batched, on whatever device the batch is on,
so that a GPU does the work during training. Evaluation and drafting never call it.

Each image of each view draws its own parameters from ``generator`` (a CPU generator: the same seed gives
the same augmentation on any device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Augment", "augment"]


@dataclass(frozen=True, slots=True)
class Augment:
    scale: tuple[float, float] = (0.8, 1.0)  # crop area as a share of the image
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect (width / height)
    degrees: float = 5.0  # rotation, either way
    brightness: float = 0.1  # added, in [0, 1] units
    contrast: float = 0.1  # factor 1 ± contrast about the image mean


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def augment(images: Tensor, generator: torch.Generator, config: Augment | None = None) -> Tensor:
    """``images`` float ``(B, V, 1, S, S)`` in ``[0, 1]`` → the same shape, augmented, within ``[0, 1]``."""
    cfg = config or Augment()
    batch, views, channels, height, width = images.shape
    n = batch * views
    flat = images.reshape(n, channels, height, width)
    area = _uniform(n, *cfg.scale, generator)
    log_ratio = _uniform(n, math.log(cfg.ratio[0]), math.log(cfg.ratio[1]), generator)
    aspect = torch.exp(log_ratio)
    crop_w = torch.sqrt(area * aspect).clamp(max=1.0)  # share of the width kept
    crop_h = torch.sqrt(area / aspect).clamp(max=1.0)
    shift_x = (1 - crop_w) * (2 * torch.rand(n, generator=generator) - 1)  # normalised [-1, 1] coordinates
    shift_y = (1 - crop_h) * (2 * torch.rand(n, generator=generator) - 1)
    angle = torch.deg2rad(_uniform(n, -cfg.degrees, cfg.degrees, generator))
    cos, sin = torch.cos(angle), torch.sin(angle)
    # output (x, y) → input: rotate, scale to the crop, shift to the crop's centre
    theta = torch.stack(
        [
            torch.stack([crop_w * cos, -crop_h * sin, shift_x], dim=1),
            torch.stack([crop_w * sin, crop_h * cos, shift_y], dim=1),
        ],
        dim=1,
    ).to(device=images.device, dtype=flat.dtype)
    grid = F.affine_grid(theta, [n, channels, height, width], align_corners=False)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    shift = _uniform(n, -cfg.brightness, cfg.brightness, generator).to(images.device, flat.dtype)
    factor = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, generator).to(images.device, flat.dtype)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * factor.view(n, 1, 1, 1) + mean + shift.view(n, 1, 1, 1)
    return out.clamp(0.0, 1.0).reshape(batch, views, channels, height, width)
