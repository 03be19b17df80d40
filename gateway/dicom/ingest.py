"""Keeping a received instance: validate, write durably, index - and only then say Success.

This is the whole of what a C-STORE handler does; it has no network code, so tests call it directly.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from pydicom.dataset import Dataset
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.dicom.attributes import InstanceAttributes, extract_attributes, read_indexed
from gateway.dicom.groupcommit import GroupCommitter
from gateway.dicom.part10 import PREAMBLE, file_meta
from gateway.dicom.structure import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    check_complete,
    dataset_offset,
    inflate_bounded,
)
from gateway.errors import DuplicateRejected, IndexError_, InvalidInstance, OutOfResources, StoreError
from gateway.index.lookup import StoredLookup
from gateway.index.models import Instance
from gateway.index.repo import InstanceRow
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.store.files import HOST, file_chunks, pid_alive, write_renamed
from gateway.store.instances import instance_path

log = logging.getLogger(__name__)

Outcome = Literal["stored", "replaced", "duplicate-kept", "duplicate-identical"]


@dataclass(frozen=True)
class StoreResult:
    outcome: Outcome
    sop_instance_uid: str
    study_instance_uid: str
    path: Path
    size: int


class Ingest:
    """Stores and indexes instances. Shared by every association of one SCP process."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], metrics: Metrics) -> None:
        self._settings = settings
        bind = sessions.kw.get("bind")
        if not isinstance(bind, Engine):
            raise TypeError("Ingest needs a session factory bound to an Engine")
        # The duplicate check reads without taking SQLite's write lock at all; writes go through the group
        # committer, which waits for a busy index only briefly (then 0xA700, which senders retry).
        self._sessions = sessions
        self._stored = StoredLookup(bind)
        self._committer = GroupCommitter(
            bind,
            busy_timeout=settings.dicom.index_busy_timeout,
            fsync=settings.dicom.fsync,
            window=settings.dicom.group_commit_window,
            on_commit=lambda rows: metrics.index_commits.inc(),
        )
        self._metrics = metrics
        self._root = settings.store_dir
        self._root.mkdir(parents=True, exist_ok=True)
        self._scratch = settings.data_dir / "incoming"
        self._intents = intents_dir(settings)
        self._intents.mkdir(parents=True, exist_ok=True)

    @property
    def settings(self) -> Settings:
        return self._settings

    def close(self) -> None:
        """Give back the index connections kept open for the C-STORE path."""
        if self._committer.groups:
            log.info(
                "index commits for received instances",
                extra={"rows": self._committer.rows, "groups": self._committer.groups},
            )
        self._stored.close()
        self._committer.close()

    def _intend(self, path: Path) -> Path:
        marker = self._intents / f"{secrets.token_hex(8)}.{HOST}.{os.getpid()}"
        try:
            marker.write_text(str(path))
        except FileNotFoundError:  # the folder was removed under us
            self._intents.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(path))
        return marker

    def check_capacity(self, size: int) -> None:
        """Raise :class:`OutOfResources` if an instance of ``size`` bytes must not be accepted now."""
        limit = self._settings.dicom.max_instance_bytes
        if size > limit:
            raise OutOfResources(f"instance of {size} bytes exceeds max_instance_bytes {limit}")
        stat = os.statvfs(self._root)
        free = stat.f_bavail * stat.f_frsize
        if free - size < self._settings.dicom.min_free_bytes:
            reserve = self._settings.dicom.min_free_bytes
            raise OutOfResources(f"only {free} bytes free in the store; keeping {reserve} in reserve")

    def _record(
        self,
        attrs: InstanceAttributes,
        ts: str,
        path: Path,
        size: int,
        digest: str,
        calling_ae: str | None,
        directories: list[Path],
    ) -> None:
        """Make the file's directory entries durable and index it, in a group with other associations."""
        self._committer.commit(InstanceRow(attrs, ts, str(path), size, digest, calling_ae), directories)

    def store(
        self,
        encoded: bytes,
        dataset: Dataset,
        *,
        transfer_syntax_uid: str,
        calling_ae: str | None,
        affected_sop_instance_uid: str | None = None,
        affected_sop_class_uid: str | None = None,
    ) -> StoreResult:
        """Keep one instance. ``encoded`` is the Part-10 file exactly as received (no transcoding)."""
        self.check_capacity(len(encoded))
        check_complete(
            memoryview(encoded)[dataset_offset(encoded) :],
            transfer_syntax_uid,
            max_inflated=self._settings.dicom.max_instance_bytes,
        )
        attrs = extract_attributes(dataset)
        _check_affected(attrs, affected_sop_instance_uid, affected_sop_class_uid)
        return self._keep(attrs, len(encoded), [encoded], transfer_syntax_uid, calling_ae)

    def store_received(
        self,
        received: Path,
        *,
        transfer_syntax_uid: str,
        calling_ae: str | None,
        affected_sop_instance_uid: str,
        affected_sop_class_uid: str,
    ) -> StoreResult:
        """Keep an instance that pynetdicom wrote to ``received`` as it arrived (chunked receive).

        Memory stays flat in the instance's size: the structure walk maps the file and reads only headers,
        only the indexed attributes are decoded (:func:`read_indexed`), a deflated data set is inflated in
        bounded pieces to a scratch file (at most ``max_instance_bytes``), and the kept file is our own
        File Meta Information followed by the data set bytes exactly as received, copied in 1 MiB pieces.
        """
        with received.open("rb") as f:
            offset = dataset_offset(f.read(1 << 16))
        size = received.stat().st_size - offset
        meta = PREAMBLE + file_meta(affected_sop_class_uid, affected_sop_instance_uid, transfer_syntax_uid)
        self.check_capacity(size + len(meta))
        limit = self._settings.dicom.max_instance_bytes
        if transfer_syntax_uid in DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            self._scratch.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self._scratch) as inflated:
                with _mapped(received) as view:
                    inflate_bounded(view[offset:], inflated, limit)
                attrs = _indexed_from_file(inflated, 0, EXPLICIT_VR_LITTLE_ENDIAN)
        else:
            attrs = _indexed_from_file(received, offset, transfer_syntax_uid)
        _check_affected(attrs, affected_sop_instance_uid, affected_sop_class_uid)
        return self._keep(
            attrs,
            size + len(meta),
            lambda: [meta, *file_chunks(received, offset)],
            transfer_syntax_uid,
            calling_ae,
        )

    def _keep(
        self,
        attrs: InstanceAttributes,
        size: int,
        content: Sequence[bytes | memoryview] | Callable[[], Iterable[bytes | memoryview]],
        transfer_syntax_uid: str,
        calling_ae: str | None,
    ) -> StoreResult:
        """Apply the duplicate policy, write durably, index: the part common to both receive paths."""

        def chunks() -> Iterable[bytes | memoryview]:
            return content() if callable(content) else content

        path = instance_path(
            self._root, attrs.study_instance_uid, attrs.series_instance_uid, attrs.sop_instance_uid
        )

        policy = self._settings.dicom.duplicate_policy
        try:
            existing = self._stored.find(attrs.sop_instance_uid)
        except IndexError_:
            log.debug("index read failed", exc_info=True)
            raise
        existing_digest, existing_path = (
            (existing.digest, existing.path) if existing is not None else (None, None)
        )
        replaced = False
        if existing_digest is not None:
            if policy == "keep-first":
                log.info("duplicate kept (first copy wins)", extra={"sop": attrs.sop_instance_uid})
                return StoreResult(
                    "duplicate-kept",
                    attrs.sop_instance_uid,
                    attrs.study_instance_uid,
                    Path(existing_path or path),
                    size,
                )
            if policy == "reject-different":
                hasher = hashlib.sha256()
                for chunk in chunks():
                    hasher.update(chunk)
                if hasher.hexdigest() == existing_digest:
                    return StoreResult(
                        "duplicate-identical",
                        attrs.sop_instance_uid,
                        attrs.study_instance_uid,
                        Path(existing_path or path),
                        size,
                    )
                raise DuplicateRejected(
                    f"SOP Instance {attrs.sop_instance_uid} already stored with different content"
                )
            replaced = True

        existed_on_disk = path.exists()
        # A marker names the file until its index row is committed: if the process dies in between, the
        # start-up sweep (sweep_unindexed) removes the file unless the index knows it.
        intent = None if existed_on_disk else self._intend(path)
        try:
            fsync = self._settings.dicom.fsync
            digest, written, directories = write_renamed(path, chunks(), fsync=fsync)
            self._record(attrs, transfer_syntax_uid, path, written, digest, calling_ae, directories)
        except Exception as exc:
            # Never leave a file that the index does not know about and the sender was not told we kept.
            if not existed_on_disk:
                path.unlink(missing_ok=True)
            if intent is not None:
                intent.unlink(missing_ok=True)
            if isinstance(exc, OutOfResources | StoreError | IndexError_):
                raise
            # The database's message can quote patient data from the statement, so only DEBUG shows it.
            log.debug("index write failed", exc_info=True)
            raise IndexError_(f"index write failed: {type(exc).__name__}") from exc
        if intent is not None:
            intent.unlink(missing_ok=True)
        self._metrics.instances_received.inc()
        self._metrics.bytes_received.inc(written)
        return StoreResult(
            "replaced" if replaced else "stored",
            attrs.sop_instance_uid,
            attrs.study_instance_uid,
            path,
            written,
        )


def intents_dir(settings: Settings) -> Path:
    return settings.data_dir / "incoming" / "unindexed"


def sweep_unindexed(settings: Settings, sessions: sessionmaker[Session]) -> int:
    """At start-up: remove files a killed writer renamed into place but never indexed; return how many.

    Only markers of dead processes on this host are considered, and a file is removed only if no index row
    has its path (then no sender was told it was kept).
    """
    folder = intents_dir(settings)
    if not folder.is_dir():
        return 0
    removed = 0
    for marker in folder.iterdir():
        parts = marker.name.split(".")
        if len(parts) < 3 or parts[-2] != HOST or not parts[-1].isdigit() or pid_alive(int(parts[-1])):
            continue
        try:
            path = Path(marker.read_text())
        except OSError:
            continue
        with sessions() as session:
            known = session.execute(select(Instance.id).where(Instance.path == str(path))).first()
        if known is None and path.is_file():
            path.unlink()
            removed += 1
            log.warning(
                "removed a stored file that was never indexed nor acknowledged", extra={"path": path.name}
            )
        marker.unlink(missing_ok=True)
    return removed


def _check_affected(
    attrs: InstanceAttributes, sop_instance_uid: str | None, sop_class_uid: str | None
) -> None:
    if sop_instance_uid is not None and attrs.sop_instance_uid != sop_instance_uid:
        raise InvalidInstance("SOPInstanceUID differs from the C-STORE Affected SOP Instance UID")
    if sop_class_uid is not None and attrs.sop_class_uid != sop_class_uid:
        raise InvalidInstance("SOPClassUID differs from the C-STORE Affected SOP Class UID")


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[memoryview]:
    """The file's bytes, memory-mapped: pages are read as touched and are not the process's own memory."""
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            yield memoryview(b"")
            return
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mapped)
        try:
            yield view
        finally:
            view.release()
            with contextlib.suppress(BufferError):  # a traceback may still hold a slice; GC closes it then
                mapped.close()


def _indexed_from_file(source: Path | BinaryIO, offset: int, transfer_syntax_uid: str) -> InstanceAttributes:
    """Walk the data set's structure (headers only) and decode the indexed attributes, from a file."""
    if isinstance(source, Path):
        with _mapped(source) as view:
            check_complete(view[offset:], transfer_syntax_uid)
        with source.open("rb") as f:
            f.seek(offset)
            return extract_attributes(read_indexed(f, transfer_syntax_uid))
    source.flush()
    with _mapped(Path(f"/proc/self/fd/{source.fileno()}")) as view:
        check_complete(view[offset:], transfer_syntax_uid)
    source.seek(offset)
    return extract_attributes(read_indexed(source, transfer_syntax_uid))
