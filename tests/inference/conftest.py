"""Fixtures for the inference tests: a small text-layer report PDF built with PyMuPDF."""

from __future__ import annotations

import pymupdf
import pytest


@pytest.fixture
def report_pdf() -> bytes:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 100), "检查所见：", fontname="china-s", fontsize=11)
    page.insert_text((72, 120), "右肺上叶结节，见图1及Se 3 Im 45。", fontname="china-s", fontsize=11)
    return bytes(doc.tobytes())
