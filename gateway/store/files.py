"""Durable file writes: temporary file, fsync, rename, fsync of the directory.

After :func:`durable_write` returns, the file survives a crash of the process or of the machine; before it
returns, the final path either does not exist or holds the previous complete content. A half-written file
only ever exists under a ``.tmp-`` name, which :func:`sweep_temporaries` removes at start-up.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from gateway.errors import OutOfResources, StoreError

TMP_PREFIX = ".tmp-"
# Temporary names carry host and pid, so a sweep can tell a crashed writer's leftovers from a live write by
# another process sharing the data directory (several SCP processes, or hosts on shared storage).
_HOST = socket.gethostname().replace(".", "-")[:32] or "host"
HOST = _HOST
FOREIGN_TMP_MAX_AGE = 3600.0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_write(path: Path, data: bytes | memoryview, *, fsync: bool = True) -> str:
    """Write ``data`` to ``path`` atomically and durably; return its SHA-256 hex digest.

    Raises :class:`OutOfResources` when the disk is full, :class:`StoreError` on other I/O errors.
    """
    return durable_write_chunks(path, [data], fsync=fsync)[0]


def durable_write_chunks(
    path: Path, chunks: Iterable[bytes | memoryview], *, fsync: bool = True
) -> tuple[str, int]:
    """As :func:`durable_write`, for content that arrives in pieces (never all in memory at once).

    Each chunk is hashed and written before the next is asked for, so a chunk may reuse its buffer.
    Returns (SHA-256 hex digest, size).
    """
    digest, size, directories = write_renamed(path, chunks, fsync=fsync)
    if fsync:
        try:
            fsync_directories(directories)
        except OSError as exc:
            raise StoreError(f"cannot sync the directory of {path.name}: {exc.strerror}") from exc
    return digest, size


def write_renamed(
    path: Path, chunks: Iterable[bytes | memoryview], *, fsync: bool = True
) -> tuple[str, int, list[Path]]:
    """Write ``chunks`` to a temporary name, fsync the file, rename it to ``path``.

    The directory entries are not yet synced: returns (SHA-256 hex digest, size, the directories whose
    fsync makes the rename durable). The caller syncs them (:func:`fsync_directories`) before it reports
    the file kept; a group committer syncs each directory once for all the files of its group.
    """
    digest = hashlib.sha256()
    size = 0
    # Unique per call, not only per process: two associations may write the same SOP Instance at once.
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        new_dirs = _make_parents(path.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # the cleanup must not hide the error being reported
            tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutOfResources(f"disk full writing {path.name}") from exc
        raise StoreError(f"cannot write {path.name}: {exc.strerror}") from exc
    except Exception:  # e.g. the source of the chunks failed; a crash leaves the .tmp- name for the sweep
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    return digest.hexdigest(), size, [path.parent, *(d.parent for d in new_dirs)]


def fsync_directories(directories: Iterable[Path]) -> None:
    """fsync each directory once (the entries of files renamed or created in it); raises OSError."""
    for directory in dict.fromkeys(directories):
        _fsync_dir(directory)


def file_chunks(path: Path, offset: int = 0, size: int = 1 << 20) -> Iterator[memoryview]:
    """The bytes of ``path`` from ``offset``, in pieces that share one buffer (use each before the next)."""
    buffer = bytearray(size)
    with path.open("rb") as f:
        f.seek(offset)
        while n := f.readinto(buffer):
            yield memoryview(buffer)[:n]


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; return the ones created (their entries need an fsync)."""
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        current = current.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
    return missing


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists on this host (a writer whose files must be left alone)."""
    return _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_leftover(tmp: Path, now: float) -> bool:
    """True if no live writer can own ``tmp``: ours with a dead pid, unknown, or another host's and old."""
    parts = tmp.name.rsplit(".", 3)
    if len(parts) == 4 and parts[2].isdigit():
        host, pid = parts[1], int(parts[2])
        if host == _HOST:
            return not _pid_alive(pid)
        try:
            return now - tmp.stat().st_mtime > FOREIGN_TMP_MAX_AGE
        except FileNotFoundError:
            return False
    return True


def sweep_temporaries(root: Path) -> int:
    """Remove temporary files left by interrupted writes; return how many.

    Files of writers that are still alive (another SCP process on this host, or a recent write from another
    host sharing the directory) are left alone.
    """
    if not root.exists():
        return 0
    removed = 0
    now = time.time()
    for tmp in root.rglob(f"{TMP_PREFIX}*"):
        if _is_leftover(tmp, now):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
