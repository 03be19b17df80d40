"""Transaction Bundles from the outbox to a receiver that checks them with the official FHIR R4 JSON schema
and the transaction rules (no FHIR server that processes transactions can run here)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fhir_receiver import FhirReceiver, check_transaction, schema_errors
from publication import publication
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from test_stage_align import put_read_report, seed

from gateway.delivery import build_senders
from gateway.delivery.fhir_push import transaction
from gateway.delivery.worker import DeliveryWorker
from gateway.index.models import FhirResource, Outbox
from gateway.pipeline.stage import StageContext
from gateway.pipeline.stages import align as align_stage
from gateway.pipeline.stages import publish as publish_stage
from gateway.settings import Settings


@pytest.fixture
def receiver() -> Iterator[FhirReceiver]:
    server = FhirReceiver().start()
    yield server
    server.stop()


def test_the_checker_can_fail() -> None:
    bundle = transaction(publication(), "http://x/fhir", "M1")
    assert check_transaction(bundle, {}) == []
    broken = transaction(publication(), "http://x/fhir", "M1")
    broken["entry"][0]["request"]["method"] = "SEND"
    broken["entry"] = [e for e in broken["entry"] if e["resource"]["resourceType"] != "Patient"]
    errors = check_transaction(broken, {})
    assert any("unresolved reference Patient/p1" in e for e in errors)
    assert schema_errors({"resourceType": "DiagnosticReport", "status": "final"})  # code, subject... missing


def _drain(worker: DeliveryWorker, sessions: sessionmaker[Session]) -> list[Outbox]:
    for _ in range(200):
        worker.run_once()
        with sessions() as session:
            rows = list(session.scalars(select(Outbox).where(Outbox.kind == "fhir").order_by(Outbox.id)))
        if rows and all(r.state in ("sent", "dead") for r in rows):
            return rows
        time.sleep(0.03)
    raise AssertionError("not drained")


def test_published_report_reaches_the_receiver(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
    receiver: FhirReceiver,
) -> None:
    settings = settings_factory(
        delivery={
            "backoff_base": 0.05,
            "backoff_max": 0.1,
            "fhir": [{"name": "imr", "base_url": receiver.base}],
        }
    )
    study = seed(sessions, tmp_path)
    put_read_report(settings, sessions, study, "右肺上叶见结节（Se 2 Im 5）。另见图1。")
    align_stage.run(StageContext(settings, sessions, 1, "align"), study)
    publish_stage.run(StageContext(settings, sessions, 1, "publish"), study)
    receiver.fail_with = 503  # first try: the server is busy → retried
    worker = DeliveryWorker(settings.delivery, sessions, build_senders(settings.delivery))
    [row] = _drain(worker, sessions)
    worker.stop()
    assert receiver.rejected == []
    assert row.state == "sent" and row.attempts == 2
    assert receiver.identifiers == [f"urn:gateway-outbox:{row.message_id}"]
    types = sorted({k.split("/")[0] for k in receiver.store})
    assert {"DiagnosticReport", "Observation", "ImagingStudy", "Patient", "ServiceRequest"} <= set(types)


def test_refused_transaction_is_dead_with_the_outcome(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
    receiver: FhirReceiver,
) -> None:
    settings = settings_factory(delivery={"fhir": [{"name": "imr", "base_url": receiver.base}]})
    study = seed(sessions, tmp_path)
    put_read_report(settings, sessions, study, "Kein Erguss.")
    align_stage.run(StageContext(settings, sessions, 1, "align"), study)
    publish_stage.run(StageContext(settings, sessions, 1, "publish"), study)
    receiver.fail_with = 422
    worker = DeliveryWorker(settings.delivery, sessions, build_senders(settings.delivery))
    [row] = _drain(worker, sessions)
    worker.stop()
    assert row.state == "dead" and row.attempts == 1
    assert "refused the transaction (422): told to fail with 422" in (row.last_error or "")


@pytest.mark.slow
def test_published_report_reaches_a_real_fhir_server(
    sessions: sessionmaker[Session], tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    """Medplum's FHIR router (npm) processes the transaction: every resource is validated by Medplum and
    stored under the gateway's ids; a redelivery of the same message is idempotent."""
    from medplum_server import MedplumServer

    server = MedplumServer().start()
    try:
        settings = settings_factory(delivery={"fhir": [{"name": "medplum", "base_url": server.base}]})
        study = seed(sessions, tmp_path)
        put_read_report(settings, sessions, study, "右肺上叶见结节（Se 2 Im 5）。另见图1。")
        align_stage.run(StageContext(settings, sessions, 1, "align"), study)
        publish_stage.run(StageContext(settings, sessions, 1, "publish"), study)
        worker = DeliveryWorker(settings.delivery, sessions, build_senders(settings.delivery))
        [row] = _drain(worker, sessions)
        assert row.state == "sent", row.last_error
        with sessions() as session:
            report = session.scalars(
                select(FhirResource).where(
                    FhirResource.resource_type == "DiagnosticReport", FhirResource.is_current
                )
            ).one()
        status, stored = server.get(f"DiagnosticReport/{report.resource_id}")
        assert status == 200 and stored["status"] == report.body["status"]
        for ref in [*report.body["result"], report.body["subject"], *report.body["imagingStudy"]]:
            assert server.get(ref["reference"])[0] == 200, ref
        # The same message again (a redelivery after kill -9): the PUTs land on the same ids.
        worker.senders["fhir"].send(row.destination, row.message_id, row.payload)
        worker.stop()
        assert server.get(f"DiagnosticReport/{report.resource_id}")[0] == 200
        _, transactions = server.get("_transactions")
        assert [t["status"] for t in transactions] == [200, 200]
        assert {t["identifier"]["value"] for t in transactions} == {f"urn:gateway-outbox:{row.message_id}"}
    finally:
        server.stop()
