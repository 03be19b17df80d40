from __future__ import annotations

from collections.abc import Iterator

import pytest
from hl7_peer import Hl7Peer


@pytest.fixture
def peer() -> Iterator[Hl7Peer]:
    server = Hl7Peer().start()
    yield server
    server.stop()
