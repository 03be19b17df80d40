"""Durable writes: temporary file, fsync, rename; disk full is OutOfResources; crash leftovers are swept."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from gateway.errors import OutOfResources, StoreError
from gateway.store import files
from gateway.store.files import TMP_PREFIX, durable_write, file_sha256, sweep_temporaries


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TMP_PREFIX)]


class TestDurableWrite:
    def test_writes_content_and_returns_digest(self, tmp_path: Path) -> None:
        path = tmp_path / "a" / "b" / "c.dcm"
        data = os.urandom(3 * 1024 * 1024 + 7)
        digest = durable_write(path, data)
        assert path.read_bytes() == data
        assert digest == hashlib.sha256(data).hexdigest() == file_sha256(path)
        assert temporaries(tmp_path) == []

    def test_accepts_memoryview(self, tmp_path: Path) -> None:
        data = b"0123456789" * 10
        digest = durable_write(tmp_path / "x", memoryview(data)[10:])
        assert (tmp_path / "x").read_bytes() == data[10:]
        assert digest == hashlib.sha256(data[10:]).hexdigest()

    def test_replace_is_atomic_and_complete(self, tmp_path: Path) -> None:
        path = tmp_path / "f"
        durable_write(path, b"first")
        durable_write(path, b"second, longer content")
        assert path.read_bytes() == b"second, longer content"
        assert temporaries(tmp_path) == []

    def test_fsyncs_file_and_directories(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        synced: list[int] = []
        real_fsync = os.fsync

        def counting_fsync(fd: int) -> None:
            synced.append(fd)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", counting_fsync)
        durable_write(tmp_path / "new1" / "new2" / "f", b"data")
        # the file, its directory, and the entries of the two new directories in their parents
        assert len(synced) == 4
        synced.clear()
        durable_write(tmp_path / "new1" / "new2" / "g", b"data", fsync=False)
        assert synced == []

    def test_disk_full_is_out_of_resources(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = tmp_path / "f"
        durable_write(path, b"previous complete content")

        def full(fd: int, data: object) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "write", full)
        with pytest.raises(OutOfResources, match="disk full"):
            durable_write(path, b"new content")
        assert path.read_bytes() == b"previous complete content"
        assert temporaries(tmp_path) == []

    def test_disk_full_after_partial_write(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        real_write = os.write
        calls = 0

        def fills_up(fd: int, data: memoryview) -> int:
            nonlocal calls
            calls += 1
            if calls == 1:
                return real_write(fd, data[:100])  # a short write, as a nearly full disk gives
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", fills_up)
        with pytest.raises(OutOfResources):
            durable_write(tmp_path / "d" / "f", b"x" * 1000)
        assert not (tmp_path / "d" / "f").exists()
        assert temporaries(tmp_path) == []

    def test_quota_is_out_of_resources(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        def over_quota(fd: int) -> None:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")

        monkeypatch.setattr(os, "fsync", over_quota)
        with pytest.raises(OutOfResources):
            durable_write(tmp_path / "f", b"data")
        assert not (tmp_path / "f").exists()
        assert temporaries(tmp_path) == []

    def test_other_errors_are_store_errors(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_bytes(b"")
        with pytest.raises(StoreError) as info:
            durable_write(tmp_path / "file" / "below-a-file", b"data")
        assert not isinstance(info.value, OutOfResources)

    def test_concurrent_writers_of_one_path_do_not_mix(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two associations storing the same SOP Instance UID (overwrite policy) write the same path."""
        path = tmp_path / "same.dcm"
        first, second = b"A" * 4096, b"B" * 100
        real_write = os.write
        paused = threading.Event()
        resume = threading.Event()

        def slow_first_write(fd: int, data: memoryview) -> int:
            if threading.current_thread().name == "first" and not paused.is_set():
                paused.set()
                assert resume.wait(10)
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", slow_first_write)
        errors: list[BaseException] = []

        def write_first() -> None:
            try:
                durable_write(path, first)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=write_first, name="first")
        thread.start()
        assert paused.wait(10)
        durable_write(path, second)  # completes while the first writer is half-way
        resume.set()
        thread.join(10)
        assert errors == []
        assert path.read_bytes() == first  # the last rename wins, and it is complete
        assert temporaries(tmp_path) == []


class TestSweep:
    def test_removes_only_temporaries(self, tmp_path: Path) -> None:
        keep = tmp_path / "1.2" / "3.4" / "5.6.dcm"
        keep.parent.mkdir(parents=True)
        keep.write_bytes(b"kept")
        leftovers = [
            keep.parent / f"{TMP_PREFIX}5.7.dcm.1234",
            tmp_path / "1.2" / f"{TMP_PREFIX}x.99",
            tmp_path / f"{TMP_PREFIX}y",
        ]
        for p in leftovers:
            p.write_bytes(b"half")
        assert sweep_temporaries(tmp_path) == 3
        assert keep.read_bytes() == b"kept"
        assert temporaries(tmp_path) == []
        assert sweep_temporaries(tmp_path) == 0

    def test_keeps_the_write_of_a_live_process_and_removes_a_dead_ones(self, tmp_path: Path) -> None:
        from gateway.store import files

        dead = subprocess.Popen(["true"])
        dead.wait()
        live = tmp_path / f"{TMP_PREFIX}a.dcm.{files._HOST}.{os.getpid()}.abcd"
        crashed = tmp_path / f"{TMP_PREFIX}b.dcm.{files._HOST}.{dead.pid}.abcd"
        other_host_recent = tmp_path / f"{TMP_PREFIX}c.dcm.elsewhere.1.abcd"
        other_host_old = tmp_path / f"{TMP_PREFIX}d.dcm.elsewhere.1.abcd"
        for p in (live, crashed, other_host_recent, other_host_old):
            p.write_bytes(b"half")
        old = time.time() - 2 * files.FOREIGN_TMP_MAX_AGE
        os.utime(other_host_old, (old, old))
        assert sweep_temporaries(tmp_path) == 2
        assert sorted(p.name for p in temporaries(tmp_path)) == sorted([live.name, other_host_recent.name])

    def test_missing_root(self, tmp_path: Path) -> None:
        assert sweep_temporaries(tmp_path / "absent") == 0

    def test_interrupted_write_leaves_only_a_temporary(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A crash between write and rename leaves a .tmp- file, which the sweep removes."""

        class Crash(BaseException):
            pass

        def crash(src: object, dst: object) -> None:
            raise Crash

        monkeypatch.setattr(files.os, "replace", crash)
        with pytest.raises(Crash):
            durable_write(tmp_path / "d" / "f.dcm", b"data")
        monkeypatch.undo()
        assert not (tmp_path / "d" / "f.dcm").exists()
        assert len(temporaries(tmp_path)) == 1
        assert sweep_temporaries(tmp_path) == 0  # its writer (this process) is still alive
        monkeypatch.setattr(files, "_pid_alive", lambda pid: False)  # as after a restart
        assert sweep_temporaries(tmp_path) == 1
        assert list((tmp_path / "d").iterdir()) == []
