"""Workers: running stages, retry on error, and reclaiming the job of a worker killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.errors import PermanentStageError
from gateway.index.models import Job, Study
from gateway.metrics import Metrics
from gateway.pipeline.stage import Stage
from gateway.pipeline.worker import Worker

HERE = Path(__file__).parent


def _wait(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _jobs(sessions, study_uid: str) -> list[Job]:  # type: ignore[no-untyped-def]
    with sessions() as session:
        study = session.query(Study).filter_by(study_instance_uid=study_uid).one()
        return list(session.query(Job).filter_by(study_fk=study.id).order_by(Job.id))


def test_stages_run_in_table_order_and_study_is_done(sessions, add_instance, pipeline_settings) -> None:
    seen: list[str] = []

    def stage(name: str) -> Stage:
        return Stage(name, lambda ctx, study: seen.append(name) or {"stage": name}, name)

    worker = Worker(pipeline_settings, sessions, Metrics(), [stage("one"), stage("two"), stage("three")])
    add_instance("1.2.4.1")
    time.sleep(0.25)
    for _ in range(3):
        assert worker.run_once()
    assert seen == ["one", "two", "three"]
    assert [j.state for j in _jobs(sessions, "1.2.4.1")] == ["done", "done", "done"]
    with sessions() as session:
        assert session.query(Study).filter_by(study_instance_uid="1.2.4.1").one().state == "done"


def test_a_failing_stage_is_retried_then_succeeds(sessions, add_instance, pipeline_settings) -> None:
    calls = {"n": 0}

    def flaky(ctx, study):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("transient")
        return {}

    worker = Worker(pipeline_settings, sessions, Metrics(), [Stage("flaky", flaky, "")])
    add_instance("1.2.4.2")
    time.sleep(0.25)
    assert worker.run_once()
    assert _jobs(sessions, "1.2.4.2")[0].state == "pending"
    _wait(lambda: worker.run_once() or _jobs(sessions, "1.2.4.2")[0].state == "done", timeout=5)
    job = _jobs(sessions, "1.2.4.2")[0]
    assert (job.state, job.attempts) == ("done", 2)


def test_permanent_error_records_reason_on_study(sessions, add_instance, pipeline_settings) -> None:
    def bad(ctx, study):  # type: ignore[no-untyped-def]
        raise PermanentStageError("the PDF is encrypted")

    worker = Worker(pipeline_settings, sessions, Metrics(), [Stage("read", bad, "")])
    add_instance("1.2.4.3")
    time.sleep(0.25)
    assert worker.run_once()
    with sessions() as session:
        study = session.query(Study).filter_by(study_instance_uid="1.2.4.3").one()
    assert study.state == "failed"
    assert study.state_reason == "read: the PDF is encrypted"


@pytest.mark.slow
def test_job_of_a_sigkilled_worker_is_reclaimed_and_completes(
    sessions, add_instance, pipeline_settings, index_url: str, tmp_path: Path
) -> None:
    add_instance("1.2.4.4")
    victim = subprocess.Popen(
        [sys.executable, str(HERE / "slow_worker.py"), index_url, str(tmp_path / "victim")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert victim.stdout is not None
        assert victim.stdout.readline().strip() == "stage started"
        job = _jobs(sessions, "1.2.4.4")[0]
        assert (job.state, job.lease_owner) == ("running", "victim")
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
    finally:
        if victim.poll() is None:
            victim.kill()
    ran: list[int] = []
    rescuer = Worker(
        pipeline_settings,
        sessions,
        Metrics(),
        [Stage("slow", lambda ctx, study: ran.append(study.id) or {}, "")],
        owner="rescuer",
    )
    assert not rescuer.run_once()  # the lease has not expired yet
    _wait(rescuer.run_once, timeout=10)
    job = _jobs(sessions, "1.2.4.4")[0]
    assert (job.state, job.attempts, len(ran)) == ("done", 2, 1)
