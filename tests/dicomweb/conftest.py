"""A real ``gateway serve`` with nothing stored yet: the DICOMweb tests fill it with STOW-RS."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from harness import Served, serve_sample


@pytest.fixture(scope="module")
def web_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = {
        "GATEWAY_DICOMWEB__CORS_ORIGINS": '["https://viewer.example.org"]',
        "GATEWAY_DICOMWEB__SIGNED_URL_LIFETIME": "60",
    }
    with serve_sample(tmp_path_factory.mktemp("dicomweb"), settings) as served:
        yield served
