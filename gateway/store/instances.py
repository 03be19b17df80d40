"""Where received instances live on disk.

The layout is ``instances/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``. Each part is a
validated UID (digits and dots only), so no received value can name a path outside the data directory.
"""

from __future__ import annotations

from pathlib import Path

from gateway.store.uids import validate_uid


def instance_path(root: Path, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    """The file for an instance; every UID is validated before it becomes a path component."""
    parts = (
        validate_uid(study_uid, what="StudyInstanceUID"),
        validate_uid(series_uid, what="SeriesInstanceUID"),
        validate_uid(sop_uid, what="SOPInstanceUID"),
    )
    path = root.joinpath(parts[0], parts[1], f"{parts[2]}.dcm")
    # Belt and braces: validated UIDs cannot contain separators, but never trust a single check.
    if root.resolve() not in path.resolve().parents:
        raise ValueError("instance path escapes the store")
    return path
