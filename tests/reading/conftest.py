"""Shared fixtures for the reading tests; the builders live in ``report_fixtures``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from report_fixtures import FakeEngine, make_report_pdf

from gateway.reading import ReadingSettings
from gateway.reading.engines.base import OcrLine


@pytest.fixture
def settings() -> ReadingSettings:
    return ReadingSettings(ocr_threads=2, dpi=150)


@pytest.fixture(scope="session")
def rapid_engine() -> object:
    from gateway.reading.engines.rapidocr import RapidOcrEngine

    return RapidOcrEngine(ReadingSettings(ocr_threads=2))


@pytest.fixture
def report_pdf() -> bytes:
    return make_report_pdf()


@pytest.fixture
def fake_engine() -> Callable[[list[OcrLine]], FakeEngine]:
    return FakeEngine
