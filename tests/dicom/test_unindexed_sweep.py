"""A file renamed into place whose index commit never happened (the process was killed between the two) is
swept at start-up, unless the index knows it; a live writer's file is left alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicom.ingest import Ingest, sweep_unindexed
from gateway.errors import IndexError_
from gateway.metrics import Metrics
from gateway.settings import Settings


def _store(ingest: Ingest, ds: Dataset, tmp_path: Path) -> Path:
    source = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(source, enforce_file_format=True)
    return ingest.store(
        source.read_bytes(), ds, transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID), calling_ae="T"
    ).path


def test_file_left_by_a_kill_between_write_and_index_is_swept(
    settings: Settings,
    sessions: sessionmaker[Session],
    make_instance: Callable[..., Dataset],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ingest = Ingest(settings, sessions, Metrics())
    kept = _store(ingest, make_instance("ct"), tmp_path)

    # Simulate the kill: the index write never happens, and the process dies before it can clean up.
    orphan_ds = make_instance("ct")

    class Killed(BaseException):
        pass

    def killed(*args: object, **kwargs: object) -> None:
        raise Killed

    monkeypatch.setattr(ingest, "_record", killed)
    monkeypatch.setattr("gateway.dicom.ingest.pid_alive", lambda pid: False)
    with pytest.raises(Killed):
        _store(ingest, orphan_ds, tmp_path)
    orphans = [p for p in settings.store_dir.rglob("*.dcm") if p != kept]
    assert len(orphans) == 1  # written, neither indexed nor acknowledged

    assert sweep_unindexed(settings, sessions) == 1
    assert [p for p in settings.store_dir.rglob("*.dcm")] == [kept]
    assert sweep_unindexed(settings, sessions) == 0


def test_ordinary_index_failure_still_removes_the_file(
    settings: Settings,
    sessions: sessionmaker[Session],
    make_instance: Callable[..., Dataset],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ingest = Ingest(settings, sessions, Metrics())

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("index down")

    monkeypatch.setattr(ingest, "_record", broken)
    with pytest.raises(IndexError_):
        _store(ingest, make_instance("ct"), tmp_path)
    assert list(settings.store_dir.rglob("*.dcm")) == []
    assert sweep_unindexed(settings, sessions) == 0
