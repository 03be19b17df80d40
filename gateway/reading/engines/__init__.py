"""OCR engines behind one interface; :func:`make_engine` builds one by name."""

from __future__ import annotations

from gateway.errors import ConfigError
from gateway.reading.engines.base import Image, OcrEngine, OcrLine
from gateway.reading.settings import ReadingSettings

__all__ = ["ENGINES", "Image", "OcrEngine", "OcrLine", "make_engine"]

ENGINES = ("rapidocr", "tesseract", "transformers")


def make_engine(name: str, settings: ReadingSettings) -> OcrEngine:
    """Build the named engine; heavy imports happen here, not at module import."""
    if name == "rapidocr":
        from gateway.reading.engines.rapidocr import RapidOcrEngine

        return RapidOcrEngine(settings)
    if name == "tesseract":
        from gateway.reading.engines.tesseract import TesseractEngine

        engine: OcrEngine = TesseractEngine(settings)
        return engine
    if name == "transformers":
        from gateway.reading.engines.transformers import TransformersEngine

        built: OcrEngine = TransformersEngine(settings)
        return built
    raise ConfigError(f"unknown OCR engine {name!r}; choose one of {', '.join(ENGINES)}")
