"""Stage artifacts on disk: ``artifacts/<study uid>/v<version>/<stage>/<key>``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gateway.store.files import durable_write
from gateway.store.uids import validate_uid

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    size: int
    sha256: str


def artifact_path(root: Path, study_uid: str, version: int, stage: str, key: str) -> Path:
    validate_uid(study_uid)
    for part in (stage, key):
        if not _KEY.match(part) or part in {".", ".."}:
            raise ValueError(f"unsafe artifact name {part!r}")
    return root / study_uid / f"v{version}" / stage / key


def write_artifact(
    root: Path, study_uid: str, version: int, stage: str, key: str, data: bytes, *, fsync: bool = True
) -> WrittenFile:
    path = artifact_path(root, study_uid, version, stage, key)
    digest = durable_write(path, data, fsync=fsync)
    return WrittenFile(path=path, size=len(data), sha256=digest)
