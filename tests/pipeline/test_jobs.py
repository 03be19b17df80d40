"""The job table as a queue: stability, claims, leases, retries, dead letter - on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from gateway.index.models import Job, Study
from gateway.pipeline import jobs
from gateway.settings import PipelineSettings, Settings

FAST = PipelineSettings(lease_seconds=0.3, max_attempts=3, backoff_base=0.05, backoff_max=0.2)


def _study(sessions: sessionmaker[Session], uid: str) -> Study:
    with sessions() as session:
        return session.query(Study).filter_by(study_instance_uid=uid).one()


def _job(sessions: sessionmaker[Session], job_id: int) -> Job:
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_backoff_grows_exponentially_and_is_capped() -> None:
    settings = PipelineSettings(backoff_base=2, backoff_max=10)
    assert [jobs.backoff_seconds(n, settings) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]


def test_study_becomes_stable_only_after_quiet_period(sessions, add_instance: Callable[..., Study]) -> None:
    add_instance("1.2.3.100")
    assert jobs.promote_stable(sessions, 60, "extract") == []
    assert _study(sessions, "1.2.3.100").state == "receiving"
    time.sleep(0.3)
    promoted = jobs.promote_stable(sessions, 0.2, "extract")
    study = _study(sessions, "1.2.3.100")
    assert promoted == [study.id]
    assert (study.state, study.version) == ("stable", 1)
    # Promoting again finds nothing: the same version is never queued twice.
    assert jobs.promote_stable(sessions, 0.2, "extract") == []


def test_claim_complete_chain_to_done(sessions, add_instance) -> None:
    add_instance("1.2.3.101")
    time.sleep(0.25)
    jobs.promote_stable(sessions, 0.2, "a")
    first = jobs.claim(sessions, "w1", FAST)
    assert first is not None and first.stage == "a"
    assert _study(sessions, "1.2.3.101").state == "processing"
    assert jobs.claim(sessions, "w2", FAST) is None  # the only job is leased
    jobs.complete(sessions, first, "w1", {"ok": 1}, next_stage="b")
    second = jobs.claim(sessions, "w2", FAST)
    assert second is not None and second.stage == "b"
    jobs.complete(sessions, second, "w2", {}, next_stage=None)
    study = _study(sessions, "1.2.3.101")
    assert (study.state, study.stage) == ("done", None)


def test_expired_lease_is_reclaimed_and_old_owner_loses(sessions, add_instance) -> None:
    add_instance("1.2.3.102")
    time.sleep(0.25)
    jobs.promote_stable(sessions, 0.2, "a")
    first = jobs.claim(sessions, "dead-worker", FAST)
    assert first is not None
    time.sleep(0.4)
    again = jobs.claim(sessions, "live-worker", FAST)
    assert again is not None and again.job_id == first.job_id and again.attempts == 2
    # The dead worker's late completion is discarded; the live one's counts.
    jobs.complete(sessions, first, "dead-worker", {"late": True}, next_stage=None)
    assert _job(sessions, first.job_id).state == "running"
    jobs.complete(sessions, again, "live-worker", {}, next_stage=None)
    assert _job(sessions, first.job_id).state == "done"


def test_failures_back_off_then_dead_letter_then_retry(sessions, add_instance) -> None:
    add_instance("1.2.3.103")
    time.sleep(0.25)
    jobs.promote_stable(sessions, 0.2, "a")
    for attempt in (1, 2, 3):
        claimed = None
        deadline = time.monotonic() + 2
        while claimed is None and time.monotonic() < deadline:
            claimed = jobs.claim(sessions, "w", FAST)
        assert claimed is not None and claimed.attempts == attempt
        state = jobs.fail(sessions, claimed, "w", "boom", permanent=False, settings=FAST)
        assert state == ("dead" if attempt == 3 else "pending")
        if state == "pending":
            assert jobs.claim(sessions, "w", FAST) is None  # not due yet: backoff
    study = _study(sessions, "1.2.3.103")
    assert study.state == "failed" and "boom" in (study.state_reason or "")
    assert jobs.retry(sessions, claimed.job_id)
    assert _study(sessions, "1.2.3.103").state == "processing"
    assert jobs.claim(sessions, "w", FAST) is not None


def test_permanent_error_dead_letters_at_once(sessions, add_instance) -> None:
    add_instance("1.2.3.104")
    time.sleep(0.25)
    jobs.promote_stable(sessions, 0.2, "a")
    claimed = jobs.claim(sessions, "w", FAST)
    assert claimed is not None
    assert jobs.fail(sessions, claimed, "w", "encrypted PDF", permanent=True, settings=FAST) == "dead"
    assert _study(sessions, "1.2.3.104").state_reason == "a: encrypted PDF"


def test_late_instance_reopens_and_runs_a_new_version(sessions, add_instance) -> None:
    add_instance("1.2.3.105", 1)
    time.sleep(0.25)
    jobs.promote_stable(sessions, 0.2, "a")
    claimed = jobs.claim(sessions, "w", FAST)
    assert claimed is not None
    jobs.complete(sessions, claimed, "w", {}, next_stage=None)
    assert _study(sessions, "1.2.3.105").state == "done"
    add_instance("1.2.3.105", 2)
    assert _study(sessions, "1.2.3.105").state == "receiving"
    time.sleep(0.25)
    jobs.promote_stable(sessions, 0.2, "a")
    study = _study(sessions, "1.2.3.105")
    assert (study.state, study.version) == ("stable", 2)
    with sessions() as session:
        versions = sorted(j.study_version for j in session.query(Job).filter_by(study_fk=study.id, stage="a"))
    assert versions == [1, 2]


def test_release_returns_jobs_without_counting_the_attempt(sessions, add_instance) -> None:
    add_instance("1.2.3.106")
    time.sleep(0.25)
    jobs.promote_stable(sessions, 0.2, "a")
    claimed = jobs.claim(sessions, "w", FAST)
    assert claimed is not None
    assert jobs.release(sessions, "w") == 1
    job = _job(sessions, claimed.job_id)
    assert (job.state, job.attempts, job.lease_owner) == ("pending", 0, None)


def test_two_workers_never_claim_the_same_job(sessions, add_instance, pipeline_settings: Settings) -> None:
    for n in range(6):
        add_instance(f"1.2.3.2{n}")
    time.sleep(0.25)
    jobs.promote_stable(sessions, 0.2, "a")
    import threading

    got: list[int] = []
    lock = threading.Lock()

    def grab(owner: str) -> None:
        while True:
            claimed = jobs.claim(sessions, owner, pipeline_settings.pipeline)
            if claimed is None:
                return
            with lock:
                got.append(claimed.job_id)

    threads = [threading.Thread(target=grab, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 6 and len(set(got)) == 6
