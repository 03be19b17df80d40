"""Where received instances live on disk.

The layout is ``instances/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``. Each part is a
validated UID (digits and dots only), so no received value can name a path outside the data directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.store.uids import validate_uid


def instance_path(root: Path, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    """The file for an instance; every UID is validated before it becomes a path component."""
    parts = (
        validate_uid(study_uid, what="StudyInstanceUID"),
        validate_uid(series_uid, what="SeriesInstanceUID"),
        validate_uid(sop_uid, what="SOPInstanceUID"),
    )
    # Belt and braces: validated UIDs cannot contain separators, but never trust a single check. The check
    # is lexical (no realpath per instance): nothing the gateway writes under the store is a symlink.
    if any(os.sep in p or p in (".", "..") for p in parts):
        raise ValueError("instance path escapes the store")
    return root.joinpath(parts[0], parts[1], f"{parts[2]}.dcm")
