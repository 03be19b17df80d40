"""The outbox as a queue, on both index back ends: claims, per-patient order, backoff, dead letter, retry."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from gateway.delivery import outbox
from gateway.delivery.settings import DeliverySettings
from gateway.index.models import Outbox, Patient, Study, utcnow

FAST = DeliverySettings(max_attempts=3, backoff_base=0.05, backoff_max=0.2, lease_seconds=1.0)
KINDS = ("oru",)


def _study(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        patient = Patient(patient_id="P", issuer="")
        session.add(patient)
        session.flush()
        study = Study(study_instance_uid="1.2.3", patient_fk=patient.id)
        session.add(study)
        session.flush()
        return study.id


def _add(
    sessions: sessionmaker[Session], study: int, mid: str, key: str = "Patient/a", dest: str = "emr"
) -> None:
    with sessions.begin() as session:
        outbox.enqueue(
            session,
            study_fk=study,
            destination=dest,
            kind="oru",
            message_id=mid,
            payload={"n": mid},
            order_key=key,
        )


def _state(sessions: sessionmaker[Session], mid: str) -> Outbox:
    with sessions() as session:
        return session.scalars(select(Outbox).where(Outbox.message_id == mid)).one()


def test_message_ids_are_stable_and_short() -> None:
    a = outbox.message_id("oru", "emr", "report-1", "2")
    assert a == outbox.message_id("oru", "emr", "report-1", "2")
    assert a != outbox.message_id("oru", "emr", "report-1", "3")
    assert len(a) == 20


def test_enqueue_is_idempotent(sessions: sessionmaker[Session]) -> None:
    study = _study(sessions)
    _add(sessions, study, "M1")
    _add(sessions, study, "M1")
    _add(sessions, study, "M1", dest="other")
    with sessions() as session:
        assert len(session.scalars(select(Outbox)).all()) == 2


def test_order_per_patient(sessions: sessionmaker[Session]) -> None:
    study = _study(sessions)
    _add(sessions, study, "A1", "Patient/a")
    _add(sessions, study, "A2", "Patient/a")
    _add(sessions, study, "B1", "Patient/b")
    first = outbox.claim(sessions, "w1", FAST, kinds=KINDS)
    second = outbox.claim(sessions, "w2", FAST, kinds=KINDS)
    assert first is not None and second is not None
    assert (first.message_id, second.message_id) == ("A1", "B1")  # A2 waits for A1
    assert outbox.claim(sessions, "w3", FAST, kinds=KINDS) is None
    assert outbox.mark_sent(sessions, first, "w1")
    third = outbox.claim(sessions, "w3", FAST, kinds=KINDS)
    assert third is not None and third.message_id == "A2"
    assert outbox.claim(sessions, "w1", FAST, kinds=("fhir",)) is None


def test_backoff_then_dead_letter_then_retry(sessions: sessionmaker[Session]) -> None:
    study = _study(sessions)
    _add(sessions, study, "M1")
    for attempt in range(1, FAST.max_attempts + 1):
        claimed = None
        deadline = utcnow() + dt.timedelta(seconds=5)
        while claimed is None and utcnow() < deadline:
            claimed = outbox.claim(sessions, "w", FAST, kinds=KINDS)
        assert claimed is not None and claimed.attempts == attempt
        state = outbox.mark_failed(
            sessions, claimed, "w", f"AE: try {attempt}", permanent=False, settings=FAST
        )
        row = _state(sessions, "M1")
        if attempt < FAST.max_attempts:
            # Deterministic on a loaded machine: the due time is the failure time plus the backoff.
            assert state == "pending" and row.available_at is not None and row.updated_at is not None
            wait = (row.available_at - row.updated_at).total_seconds()
            assert wait == pytest.approx(outbox.backoff_seconds(attempt, FAST), abs=1e-3)
        else:
            assert state == "dead"
    assert _state(sessions, "M1").last_error == "AE: try 3"
    assert outbox.retry(sessions, _state(sessions, "M1").id)
    again = outbox.claim(sessions, "w", FAST, kinds=KINDS)
    assert again is not None and again.attempts == 1


def test_permanent_failure_is_dead_at_once_and_frees_the_patient(sessions: sessionmaker[Session]) -> None:
    study = _study(sessions)
    _add(sessions, study, "M1")
    _add(sessions, study, "M2")
    claimed = outbox.claim(sessions, "w", FAST, kinds=KINDS)
    assert claimed is not None
    assert outbox.mark_failed(sessions, claimed, "w", "AR: rejected", permanent=True, settings=FAST) == "dead"
    nxt = outbox.claim(sessions, "w", FAST, kinds=KINDS)
    assert nxt is not None and nxt.message_id == "M2"


def test_expired_lease_is_reclaimed_with_the_same_id(sessions: sessionmaker[Session]) -> None:
    """A worker killed after sending leaves the row 'sending'; another takes it over after the lease."""
    study = _study(sessions)
    _add(sessions, study, "M1")
    dead_worker = outbox.claim(sessions, "dead", FAST, kinds=KINDS)
    assert dead_worker is not None
    assert outbox.claim(sessions, "live", FAST, kinds=KINDS) is None
    with sessions.begin() as session:
        session.execute(update(Outbox).values(lease_expires_at=utcnow() - dt.timedelta(seconds=1)))
    taken = outbox.claim(sessions, "live", FAST, kinds=KINDS)
    assert taken is not None and taken.message_id == "M1" and taken.attempts == 2
    assert not outbox.mark_sent(sessions, dead_worker, "dead")  # the old owner's late result is ignored
    assert outbox.mark_sent(sessions, taken, "live")
    assert _state(sessions, "M1").state == "sent"


def test_release_gives_back_without_counting(sessions: sessionmaker[Session]) -> None:
    study = _study(sessions)
    _add(sessions, study, "M1")
    assert outbox.claim(sessions, "w", FAST, kinds=KINDS) is not None
    assert outbox.release(sessions, "w") == 1
    row = _state(sessions, "M1")
    assert row.state == "pending" and row.attempts == 0


def test_dead_on_arrival_keeps_its_reason(sessions: sessionmaker[Session]) -> None:
    study = _study(sessions)
    with sessions.begin() as session:
        outbox.enqueue(
            session,
            study_fk=study,
            destination="emr",
            kind="oru",
            message_id="X",
            payload={},
            dead_reason="cannot build ORU^R01: text not in 8859/1",
        )
    row = _state(sessions, "X")
    assert row.state == "dead" and "8859/1" in (row.last_error or "")
    assert outbox.claim(sessions, "w", FAST, kinds=KINDS) is None


def test_not_claimed_while_backing_off(sessions: sessionmaker[Session]) -> None:
    slow = DeliverySettings(max_attempts=3, backoff_base=60, backoff_max=60, lease_seconds=1.0)
    study = _study(sessions)
    _add(sessions, study, "M1")
    claimed = outbox.claim(sessions, "w", slow, kinds=KINDS)
    assert claimed is not None
    assert outbox.mark_failed(sessions, claimed, "w", "AE", permanent=False, settings=slow) == "pending"
    assert outbox.claim(sessions, "w", slow, kinds=KINDS) is None


def test_backoff_doubles_and_caps() -> None:
    settings = DeliverySettings(backoff_base=5, backoff_max=30)
    assert [outbox.backoff_seconds(n, settings) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 30, 30]
