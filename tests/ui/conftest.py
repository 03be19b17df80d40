"""A real ``gateway serve`` with a (tiny, untrained) findings checkpoint, fed the sample study by storescu,
and one reader account made with ``gateway user add``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from harness import TOKEN, Served, find_free_port, load_sample_module

READER = ("reader1", "correct horse battery", "Dr Reader One")


@pytest.fixture(scope="session")
def reader() -> tuple[str, str, str]:
    """(user name, password, display name) of the account ``ui_served`` creates."""
    return READER


@pytest.fixture(scope="module")
def ui_served(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Callable[..., Path]
) -> Iterator[Served]:
    if shutil.which("storescu") is None:
        pytest.fail("DCMTK storescu is not installed (scripts/system-deps.sh installs it)")
    root = tmp_path_factory.mktemp("ui")
    sample_dir = root / "sample"
    manifest = load_sample_module().build_sample_study(sample_dir)
    data_dir = root / "data"
    dicom_port, http_port = find_free_port(), find_free_port()
    log = root / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_FINDINGS__CHECKPOINT"] = str(tiny_checkpoint("cnn-lstm"))
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
        served.storescu(*sorted(sample_dir.glob("*.dcm")))
        served.wait_state({"done", "failed"}, timeout=240)
        assert served.study()["state"] == "done", served.log.read_text()[-3000:]
        name, password, display = READER
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "user",
                "add",
                name,
                "--role",
                "reader",
                "--display-name",
                display,
                "--password-stdin",
                "--data-dir",
                str(data_dir),
            ],
            input=password + "\n",
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
            env=env,
        )
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
