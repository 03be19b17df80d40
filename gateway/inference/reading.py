"""The reading service core shared by the HTTP service and the in-process reader.

It owns the OCR engines (built once, on first use) and, for rapidocr, a cross-request recognition batcher.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from gateway.reading import ReadingSettings, ReadResult, read_bytes
from gateway.reading.engines import Image, OcrEngine, OcrLine, make_engine


class ReadingCore:
    """Read documents with shared engines. ``batch`` routes rapidocr recognition through a batcher thread."""

    def __init__(
        self,
        settings: ReadingSettings,
        *,
        batch: bool = True,
        engine_factory: Callable[[str, ReadingSettings], OcrEngine] = make_engine,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self._batch = batch
        self._factory = engine_factory
        self._on_batch = on_batch
        self._engines: dict[str, OcrEngine] = {}
        self._lock = threading.Lock()
        self._closers: list[Callable[[], None]] = []

    def engine(self, name: str | None = None) -> OcrEngine:
        name = name or self.settings.engine
        with self._lock:
            if name not in self._engines:
                engine = self._factory(name, self.settings)
                from gateway.reading.engines.rapidocr import RapidOcrEngine

                if self._batch and isinstance(engine, RapidOcrEngine):
                    from gateway.inference.batcher import RecognitionBatcher

                    batcher = RecognitionBatcher(
                        engine.recognize,
                        max_batch=max(64, self.settings.rec_batch_size),
                        on_batch=self._on_batch,
                    )
                    self._closers.append(batcher.close)
                    engine = engine.with_recognizer(batcher)
                self._engines[name] = engine
            return self._engines[name]

    @property
    def device(self) -> str:
        engine = self._engines.get(self.settings.engine)
        return str(getattr(engine, "device", "cpu")) if engine is not None else "not loaded"

    def read(self, data: bytes, filename: str | None = None, engine: str | None = None) -> ReadResult:
        # The engine is passed lazily: a text-layer PDF or an SR never needs one built.
        settings = self.settings if engine is None else self.settings.model_copy(update={"engine": engine})
        return read_bytes(data, filename=filename, settings=settings, engine=_Lazy(self, settings.engine))

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()


class _Lazy:
    """An engine proxy that builds the real engine at its first ``read``."""

    def __init__(self, core: ReadingCore, name: str) -> None:
        self._core = core
        self._name = name

    @property
    def name(self) -> str:
        return self._core.engine(self._name).name

    @property
    def version(self) -> str:
        return self._core.engine(self._name).version

    @property
    def models(self) -> list[dict[str, str]]:
        found: list[dict[str, str]] = getattr(self._core.engine(self._name), "models", [])
        return found

    def read(self, image: Image) -> list[OcrLine]:
        return self._core.engine(self._name).read(image)
