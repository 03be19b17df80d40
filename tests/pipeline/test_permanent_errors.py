"""Errors that retrying cannot fix go to the dead letter at once, whatever raised them."""

from __future__ import annotations

import time

import pytest
from pydicom.errors import InvalidDicomError

from gateway.index.models import Job, Study
from gateway.metrics import Metrics
from gateway.pipeline.stage import Stage
from gateway.pipeline.worker import Worker


@pytest.mark.parametrize(
    "error", [RecursionError("maximum recursion depth exceeded"), InvalidDicomError("not DICOM")]
)
def test_a_deterministic_failure_is_not_retried(sessions, add_instance, pipeline_settings, error) -> None:  # type: ignore[no-untyped-def]
    calls = []

    def bad(ctx, study):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise error

    worker = Worker(pipeline_settings, sessions, Metrics(), [Stage("align", bad, "")])
    add_instance("1.2.9.6")
    time.sleep(0.25)
    assert worker.run_once()
    with sessions() as session:
        study = session.query(Study).filter_by(study_instance_uid="1.2.9.6").one()
        [job] = session.query(Job).filter_by(study_fk=study.id).all()
    assert job.state == "dead"
    assert job.attempts == 1
    assert study.state == "failed"
    assert type(error).__name__ in (study.state_reason or "")
