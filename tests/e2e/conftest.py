"""A real ``gateway serve`` process fed with the sample study by DCMTK's storescu."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from harness import Served, serve_sample


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if shutil.which("storescu") is None:
        pytest.fail("DCMTK storescu is not installed (scripts/system-deps.sh installs it)")
    with serve_sample(tmp_path_factory.mktemp("e2e")) as served:
        yield served
