from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The python-hl7 peer and the sample publication live beside the HL7 tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hl7"))

from hl7_peer import Hl7Peer


@pytest.fixture
def peer() -> Iterator[Hl7Peer]:
    server = Hl7Peer().start()
    yield server
    server.stop()
