"""Several SCP processes sharing one port (``dicom.processes``, SO_REUSEPORT)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from pydicom.uid import generate_uid

pytestmark = [pytest.mark.dcmtk, pytest.mark.slow]


def scp_children(parent: psutil.Process) -> list[psutil.Process]:
    """The SCP processes under ``parent``, skipping zombies and multiprocessing's resource tracker."""
    out = []
    for child in parent.children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline()):
                out.append(child)
        except psutil.Error:
            continue
    return out


def test_two_scp_processes_keep_every_instance_and_stop_together(
    gateway_process, make_instance, dcmtk, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GATEWAY_DICOM__PROCESSES", "2")
    gateway_process.start()
    assert gateway_process.proc is not None
    parent = psutil.Process(gateway_process.proc.pid)
    assert len(scp_children(parent)) == 1  # one more SCP process beside the parent
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
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for f in folders
    ]
    for sender in senders:
        out, _ = sender.communicate(timeout=120)
        assert sender.returncode == 0, (
            out.decode(errors="replace")[-2000:],
            gateway_process.log.read_text()[-3000:],
        )
    listed = json.loads(gateway_process.run("studies", "--json").stdout)
    assert [s["instances"] for s in listed if s["study_instance_uid"] == study] == [60]
    assert "Traceback" not in gateway_process.log.read_text()  # every process came up and served
    # A process that dies is replaced, so the port keeps its listeners.
    (scp_child,) = scp_children(parent)
    scp_child.kill()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        alive = scp_children(parent)
        if alive and alive[0].pid != scp_child.pid:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the dead SCP process was not replaced")
    children = scp_children(parent)
    gateway_process.stop()
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
