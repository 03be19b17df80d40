"""Where the mapping files live.

Mappings are data, kept in ``mappings/`` at the top of the source tree. An editable install reads them
there; a regular install ships them to ``<prefix>/share/gateway/mappings`` (see ``pyproject.toml``).
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def mappings_dir() -> Path:
    candidates = (
        Path(__file__).resolve().parents[1] / "mappings",
        Path(sys.prefix) / "share" / "gateway" / "mappings",
    )
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("mappings directory not found; looked in " + ", ".join(map(str, candidates)))


def mapping_path(*parts: str) -> Path:
    return mappings_dir().joinpath(*parts)
