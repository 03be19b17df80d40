"""Readiness reflects what C-STORE needs: space above the reserve, and an index that answers promptly."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.http.app import build_app
from gateway.metrics import Metrics
from gateway.settings import Settings


def _client(settings: Settings, sessions) -> TestClient:  # type: ignore[no-untyped-def]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return TestClient(build_app(settings, sessions, Metrics(), "s3cret"))


def test_not_ready_when_free_space_is_below_the_reserve(settings_factory, sessions) -> None:  # type: ignore[no-untyped-def]
    settings = settings_factory(dicom={"min_free_bytes": 2**60})
    response = _client(settings, sessions).get("/readyz")
    assert response.status_code == 503
    assert any("free" in problem for problem in response.json()["problems"])


@pytest.mark.parametrize("index_url", ["sqlite"], indirect=True)
def test_ready_answers_promptly_while_a_long_write_holds_the_index(settings, sessions, index_url) -> None:  # type: ignore[no-untyped-def]
    holder = sqlite3.connect(Path(index_url.removeprefix("sqlite:///")), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        response = _client(settings, sessions).get("/readyz")
        assert time.monotonic() - started < 5
        assert response.status_code == 200, response.json()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
