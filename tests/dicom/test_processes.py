"""Several SCP processes sharing one port (``dicom.processes``, SO_REUSEPORT)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psutil
import pytest
from pydicom.uid import generate_uid

pytestmark = [pytest.mark.dcmtk, pytest.mark.slow]


def test_two_scp_processes_keep_every_instance_and_stop_together(
    gateway_process, make_instance, dcmtk, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GATEWAY_DICOM__PROCESSES", "2")
    gateway_process.start()
    assert gateway_process.proc is not None
    parent = psutil.Process(gateway_process.proc.pid)
    children = parent.children()
    # One more SCP process beside the parent (multiprocessing also starts its resource tracker).
    assert len([c for c in children if "resource_tracker" not in " ".join(c.cmdline())]) == 1
    study = generate_uid()
    folders = []
    for a in range(4):
        folder = tmp_path / f"batch{a}"
        folder.mkdir()
        for n in range(15):
            make_instance("ct", study_uid=study, instance_number=a * 15 + n + 1, path=folder / f"{n}.dcm")
        folders.append(folder)
    senders = [
        subprocess.Popen(
            [
                "storescu",
                "-aec",
                "GATEWAY",
                "127.0.0.1",
                str(gateway_process.port),
                "--scan-directories",
                str(f),
            ],
            env=dcmtk,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for f in folders
    ]
    for sender in senders:
        _, err = sender.communicate(timeout=120)
        assert sender.returncode == 0, err
    listed = json.loads(gateway_process.run("studies", "--json").stdout)
    assert [s["instances"] for s in listed if s["study_instance_uid"] == study] == [60]
    gateway_process.stop()
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)
