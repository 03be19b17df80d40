"""A published study (as in tests/fhir) for the authorization tests."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fhir"))

from fhir_seed import publish_input, seed_index

from gateway.fhir.mapping import build_resources
from gateway.fhir.store import save_resources


@pytest.fixture
def published(sessions: sessionmaker[Session], tmp_path: Path) -> dict[str, Any]:
    study_fk = seed_index(sessions, tmp_path)
    resources = build_resources(publish_input())
    with sessions.begin() as session:
        save_resources(session, resources, study_fk=study_fk, now=dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC))
    return {"study_fk": study_fk, "resources": resources, "sessions": sessions}
