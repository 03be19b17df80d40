"""A real ``gateway serve`` process fed with the sample study by DCMTK's storescu."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from harness import TOKEN, Served, find_free_port, load_sample_module


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if shutil.which("storescu") is None:
        pytest.fail("DCMTK storescu is not installed (scripts/system-deps.sh installs it)")
    root = tmp_path_factory.mktemp("e2e")
    sample_dir = root / "sample"
    manifest = load_sample_module().build_sample_study(sample_dir)
    data_dir = root / "data"
    dicom_port, http_port = find_free_port(), find_free_port()
    log = root / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
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
        echo = subprocess.run(
            ["echoscu", "-aec", "GATEWAY", "127.0.0.1", str(dicom_port)],
            capture_output=True,
            env={**os.environ, "TCP_NODELAY": "1"},
        )
        if echo.returncode == 0:
            break
        assert proc.poll() is None, log.read_text()
        time.sleep(0.3)
    try:
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
