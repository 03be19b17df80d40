"""`gateway push` (a C-STORE SCU sending files as they are) against the in-process SCP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian, RLELossless, generate_uid
from sqlalchemy import func, select

from gateway.dicom.push import push_files
from gateway.index.models import Instance


def outgoing(folder: Path, make_instance: Callable[..., Dataset]) -> list[Path]:
    study = generate_uid()
    paths = []
    for i, (kind, syntax) in enumerate(
        [("ct", ImplicitVRLittleEndian), ("pdf", None), ("sr", None), ("ct", RLELossless)]
    ):
        ds = make_instance(kind, study_uid=study, instance_number=i)
        if syntax == RLELossless:
            ds.compress(RLELossless)
        elif syntax is not None:
            ds.file_meta.TransferSyntaxUID = syntax
        path = folder / "sub" / f"{i}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    (folder / "README.txt").write_text("not DICOM")
    return paths


def stored_count(scp: Any) -> int:
    with scp.ingest._sessions() as session:
        return int(session.scalar(select(func.count(Instance.id))) or 0)


def test_push_folder(scp: Any, make_instance: Callable[..., Dataset], tmp_path: Path) -> None:
    paths = outgoing(tmp_path / "out", make_instance)
    result = push_files(
        [tmp_path / "out"],
        host="127.0.0.1",
        port=scp.port,
        called_aet="GATEWAY",
        calling_aet="PUSH",
        progress=False,
    )
    assert (result.sent, result.failed, result.skipped) == (4, 0, 1)
    assert stored_count(scp) == 4
    # files go as they are: the dataset bytes in the store equal the file's
    stored = {p.name: p.read_bytes() for p in scp.settings.store_dir.rglob("*.dcm")}
    for path in paths:
        body = path.read_bytes()
        assert any(data.endswith(body[-200:]) for data in stored.values())


def test_push_refused_association(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset], tmp_path: Path
) -> None:
    scp = start_scp(dicom={"peers": [{"ae_title": "KNOWN"}]})
    outgoing(tmp_path / "out", make_instance)
    result = push_files(
        [tmp_path / "out"],
        host="127.0.0.1",
        port=scp.port,
        called_aet="GATEWAY",
        calling_aet="STRANGER",
        progress=False,
    )
    assert (result.sent, result.failed) == (0, 4)
    assert stored_count(scp) == 0


def test_push_counts_refused_instances(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset], tmp_path: Path
) -> None:
    scp = start_scp(dicom={"min_free_bytes": 2**62})
    outgoing(tmp_path / "out", make_instance)
    result = push_files(
        [tmp_path / "out"],
        host="127.0.0.1",
        port=scp.port,
        called_aet="GATEWAY",
        calling_aet="PUSH",
        progress=False,
    )
    assert (result.sent, result.failed) == (0, 4)
    assert all("0xA700" in reason for _, reason in result.failures)


@pytest.fixture
def index_url(sqlite_index_url: str) -> str:
    """The SCU side does not depend on the index back end."""
    return sqlite_index_url


def test_push_command(scp: Any, make_instance: Callable[..., Dataset], tmp_path: Path) -> None:
    outgoing(tmp_path / "out", make_instance)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "push",
            str(tmp_path / "out"),
            "--port",
            str(scp.port),
            "--data-dir",
            str(tmp_path / "cli"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "sent 4, failed 0, skipped 1" in done.stdout
    assert stored_count(scp) == 4
