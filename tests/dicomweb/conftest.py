"""A real ``gateway serve`` with nothing stored yet: the DICOMweb tests fill it with STOW-RS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from harness import TOKEN, Served, find_free_port, load_sample_module


@pytest.fixture(scope="module")
def web_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("dicomweb")
    sample_dir = root / "sample"
    manifest = load_sample_module().build_sample_study(sample_dir)
    data_dir = root / "data"
    dicom_port, http_port = find_free_port(), find_free_port()
    log = root / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DICOMWEB__CORS_ORIGINS"] = '["https://viewer.example.org"]'
    env["GATEWAY_DICOMWEB__SIGNED_URL_LIFETIME"] = "60"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--data-dir",
                str(data_dir),
                "--dicom-port",
                str(dicom_port),
                "--http-port",
                str(http_port),
                "--stable-age",
                "1",
                "--api-token",
                TOKEN,
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
    served = Served(proc, data_dir, dicom_port, http_port, sample_dir, manifest, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{served.base}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()
        time.sleep(0.3)
    try:
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
