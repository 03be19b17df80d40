"""A real ``gateway serve`` with a (tiny, untrained) findings checkpoint, fed the sample study by storescu,
and one reader account made with ``gateway user add``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from harness import Served, serve_sample

READER = ("reader1", "correct horse battery", "Dr Reader One")


@pytest.fixture(scope="session")
def reader() -> tuple[str, str, str]:
    """(user name, password, display name) of the account ``ui_served`` creates."""
    return READER


@pytest.fixture(scope="module")
def ui_served(
    tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Callable[..., Path]
) -> Iterator[Served]:
    if shutil.which("storescu") is None:
        pytest.fail("DCMTK storescu is not installed (scripts/system-deps.sh installs it)")
    checkpoint = {"GATEWAY_FINDINGS__CHECKPOINT": str(tiny_checkpoint("cnn-lstm"))}
    with serve_sample(tmp_path_factory.mktemp("ui"), checkpoint) as served:
        served.storescu(*sorted(served.sample_dir.glob("*.dcm")))
        served.wait_state({"done", "failed"}, timeout=240)
        assert served.study()["state"] == "done", served.log.read_text()[-3000:]
        name, password, display = READER
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "user",
                "add",
                name,
                "--role",
                "reader",
                "--display-name",
                display,
                "--password-stdin",
                "--data-dir",
                str(served.data_dir),
            ],
            input=password + "\n",
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        )
        yield served
