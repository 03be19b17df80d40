"""DCMTK's echoscu and storescu, a real peer no one here wrote, against a `gateway scp` process."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

pytestmark = [pytest.mark.dcmtk]


@pytest.fixture
def index_url(sqlite_index_url: str) -> str:
    """The interoperability tests need one back end; the SCP tests cover both."""
    return sqlite_index_url


def storescu(
    port: int, *args: str, called: str = "GATEWAY", env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["storescu", "-aet", "DCMTK", "-aec", called, "-to", "10", "127.0.0.1", str(port), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_echoscu_and_storescu(
    gateway_process: Any, make_instance: Callable[..., Dataset], tmp_path: Path, dcmtk: dict[str, str]
) -> None:
    gateway_process.start()
    echo = subprocess.run(
        ["echoscu", "-aec", "GATEWAY", "127.0.0.1", str(gateway_process.port)],
        env=dcmtk,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert echo.returncode == 0, echo.stderr

    study = generate_uid()
    folder = tmp_path / "outgoing"
    for i in range(4):
        make_instance("ct", study_uid=study, instance_number=i, path=folder / f"ct{i}.dcm")
    make_instance("pdf", study_uid=study, path=folder / "report.dcm")
    make_instance("sr", study_uid=study, path=folder / "sr.dcm")
    sent = storescu(gateway_process.port, "--scan-directories", str(folder), env=dcmtk)
    assert sent.returncode == 0, sent.stderr

    listed = gateway_process.run("studies", "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    assert entry["study_instance_uid"] == study
    assert entry["instances"] == 6
    assert entry["patient_id"] == "TEST-0001"
    assert entry["state"] == "receiving"
    stored = sorted((gateway_process.data_dir / "instances" / study).rglob("*.dcm"))
    assert len(stored) == 6


def test_storescu_wrong_called_ae_fails(
    gateway_process: Any, make_instance: Callable[..., Dataset], tmp_path: Path, dcmtk: dict[str, str]
) -> None:
    gateway_process.start()
    make_instance("ct", path=tmp_path / "ct.dcm")
    sent = storescu(gateway_process.port, str(tmp_path / "ct.dcm"), called="SOMEONE-ELSE", env=dcmtk)
    assert sent.returncode != 0
    assert "Called AE Title Not Recognized" in sent.stdout + sent.stderr
    listed = gateway_process.run("studies", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
