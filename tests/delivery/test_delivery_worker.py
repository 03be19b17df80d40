"""The delivery worker with the real ORU sender against python-hl7's MLLP server, and `gateway outbox`."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
from hl7_peer import Hl7Peer, Received, check_oru
from publication import publication
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.cli import main
from gateway.delivery import build_senders, outbox
from gateway.delivery.oru import KIND, options
from gateway.delivery.settings import DeliverySettings
from gateway.delivery.worker import DeliveryWorker
from gateway.hl7.oru import build_oru
from gateway.index.models import Outbox, Patient, Study


def _settings(port: int) -> DeliverySettings:
    return DeliverySettings.model_validate(
        {
            "max_attempts": 3,
            "backoff_base": 0.05,
            "backoff_max": 0.1,
            "lease_seconds": 2,
            "poll_interval": 0.02,
            "hl7": [{"name": "emr", "host": "127.0.0.1", "port": port, "ack_timeout": 5}],
        }
    )


def _queue(sessions: sessionmaker[Session], settings: DeliverySettings, mids: list[str]) -> None:
    with sessions.begin() as session:
        patient = Patient(patient_id="P", issuer="")
        session.add(patient)
        session.flush()
        study = Study(study_instance_uid="1.2.3", patient_fk=patient.id)
        session.add(study)
        session.flush()
        for mid in mids:
            er7 = build_oru(publication(), options(settings.hl7[0], mid))
            outbox.enqueue(
                session,
                study_fk=study.id,
                destination="emr",
                kind=KIND,
                message_id=mid,
                payload={"er7": er7, "charset": "UNICODE UTF-8"},
                order_key="Patient/p1",
            )


def _drain(worker: DeliveryWorker, sessions: sessionmaker[Session], timeout: float = 15) -> list[Outbox]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.run_once()
        with sessions() as session:
            rows = list(session.scalars(select(Outbox).order_by(Outbox.id)))
        if all(r.state in ("sent", "dead") for r in rows):
            return rows
        time.sleep(0.02)
    raise AssertionError("outbox not drained")


def test_error_then_accept_is_retried_in_order(sessions: sessionmaker[Session], peer: Hl7Peer) -> None:
    seen: Counter[str] = Counter()

    def answer(item: Received) -> tuple[str, str]:
        check_oru(item)
        seen[item.message_id] += 1
        return ("AE", "interface busy") if item.message_id == "M1" and seen["M1"] == 1 else ("AA", "")

    peer.answer = answer
    settings = _settings(peer.port)
    _queue(sessions, settings, ["M1", "M2", "M3"])
    worker = DeliveryWorker(settings, sessions, build_senders(settings))
    rows = _drain(worker, sessions)
    worker.stop()
    assert [(r.message_id, r.state, r.attempts) for r in rows] == [
        ("M1", "sent", 2),
        ("M2", "sent", 1),
        ("M3", "sent", 1),
    ]
    assert peer.ids == ["M1", "M1", "M2", "M3"]  # M2 waited for M1: one patient, in order
    assert peer.errors == []


def test_reject_dead_letters_then_cli_retry(
    sessions: sessionmaker[Session], peer: Hl7Peer, index_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter([("AR", "unknown order"), ("AA", "")])
    peer.answer = lambda item: next(answers)
    settings = _settings(peer.port)
    _queue(sessions, settings, ["M1"])
    worker = DeliveryWorker(settings, sessions, build_senders(settings))
    [row] = _drain(worker, sessions)
    assert row.state == "dead" and row.attempts == 1
    assert row.last_error == "receiver rejected the message (AR: unknown order)"

    assert main(["outbox", "--json", "--database-url", index_url]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["state"] == "dead" and "AR: unknown order" in listed["last_error"]
    assert "er7" not in json.dumps(listed)  # the payload holds patient data
    assert main(["outbox", "--database-url", index_url]) == 0
    assert "gateway outbox retry" in capsys.readouterr().out
    assert main(["outbox", "retry", str(row.id), "--database-url", index_url]) == 0
    [row] = _drain(worker, sessions)
    worker.stop()
    assert row.state == "sent" and peer.ids == ["M1", "M1"]
    assert main(["outbox", "retry", str(row.id), "--database-url", index_url]) == 1  # sent: nothing to do


def test_unreachable_destination_backs_off_to_dead(sessions: sessionmaker[Session]) -> None:
    gone = Hl7Peer().start()
    port = gone.port
    gone.stop()
    settings = _settings(port)
    _queue(sessions, settings, ["M1"])
    worker = DeliveryWorker(settings, sessions, build_senders(settings))
    [row] = _drain(worker, sessions)
    worker.stop()
    assert row.state == "dead" and row.attempts == 3 and "cannot connect" in (row.last_error or "")
