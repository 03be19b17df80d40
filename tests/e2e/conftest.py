"""A real ``gateway serve`` process fed with the sample study by DCMTK's storescu."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Served, serve_sample

# the SMART client helpers (keys, tokens, fhir-kit-client) live with the authorization tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "auth"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if shutil.which("storescu") is None:
        pytest.fail("DCMTK storescu is not installed (scripts/system-deps.sh installs it)")
    with serve_sample(tmp_path_factory.mktemp("e2e")) as served:
        yield served
