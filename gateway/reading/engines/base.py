"""The OCR engine boundary: a name, a version, and ``read(image) -> lines``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]  # H x W x 3, RGB


@dataclass(frozen=True)
class OcrLine:
    """One recognised line in image pixels: its text, its axis-aligned box and the engine's confidence."""

    text: str
    bbox: tuple[float, float, float, float]
    confidence: float


@runtime_checkable
class OcrEngine(Protocol):
    """What the reader needs from an OCR engine. Implementations: rapidocr, tesseract, transformers."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def read(self, image: Image) -> list[OcrLine]:
        """Recognise the lines of one page image (RGB)."""
        ...
