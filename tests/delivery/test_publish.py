"""Outbox rows are written in the publication's transaction: one ORU per report version and destination."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hl7_peer import Hl7Peer, Received, check_oru
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from test_stage_align import put_read_report, seed

from gateway.delivery import build_senders
from gateway.delivery.worker import DeliveryWorker
from gateway.hl7.escape import unescape
from gateway.index.models import FhirResource, Order, Outbox
from gateway.pipeline.stage import StageContext
from gateway.pipeline.stages import align as align_stage
from gateway.pipeline.stages import publish as publish_stage
from gateway.settings import Settings


def _publish(settings: Settings, sessions: sessionmaker[Session], study: Any) -> dict[str, Any]:
    align_stage.run(StageContext(settings, sessions, study.version, "align"), study)
    return publish_stage.run(StageContext(settings, sessions, study.version, "publish"), study)


def _rows(sessions: sessionmaker[Session]) -> list[Outbox]:
    with sessions() as session:
        return list(session.scalars(select(Outbox).order_by(Outbox.id)))


def test_publication_queues_and_delivers_oru(
    sessions: sessionmaker[Session], tmp_path: Path, settings_factory: Callable[..., Settings], peer: Hl7Peer
) -> None:
    received: list[Received] = []

    def answer(item: Received) -> tuple[str, str]:
        check_oru(item)
        received.append(item)
        return "AA", ""

    peer.answer = answer
    settings = settings_factory(
        delivery={
            "poll_interval": 0.02,
            "hl7": [
                {"name": "emr", "host": "127.0.0.1", "port": peer.port, "image_links": "uid"},
                {"name": "ris", "host": "127.0.0.1", "port": peer.port, "charset": "ASCII"},
            ],
        }
    )
    study = seed(sessions, tmp_path)
    put_read_report(settings, sessions, study, "右肺上叶见结节（Se 2 Im 5）。另见图1。")
    assert _publish(settings, sessions, study)["outbox"] == 2
    rows = _rows(sessions)
    assert [(r.destination, r.state) for r in rows] == [("emr", "pending"), ("ris", "dead")], rows[
        0
    ].last_error
    assert "UNICODE UTF-8" in (rows[1].last_error or "")  # Chinese text cannot go out as ASCII: said so
    _publish(settings, sessions, study)  # an unchanged re-run adds no message
    assert len(_rows(sessions)) == 2

    worker = DeliveryWorker(settings.delivery, sessions, build_senders(settings.delivery))
    worker.run_once()
    worker.stop()
    [item] = received
    assert item.message_id == rows[0].message_id
    obx = [seg for seg in item.parsed if str(seg[0]) == "OBX"]
    texts = [unescape(str(s(5))) for s in obx if str(s(2)) == "TX"]
    assert texts == ["右肺上叶见结节（Se 2 Im 5）。", "另见图1。"]
    assert [str(s(5)).split("^")[0] for s in obx if str(s(2)) == "RP"] == [
        f"{study.study_instance_uid}.2.5",
        f"{study.study_instance_uid}.2.3",
    ]
    assert str(item.parsed.segment("OBR")(18)) == "ACC-7"
    assert str(item.parsed.segment("OBR")(25)) == "F"

    # An amended report (study version 2) is a new message, status C.
    study.version = 2
    put_read_report(settings, sessions, study, "右肺上叶见结节（Se 2 Im 5），较前增大。另见图1。")
    _publish(settings, sessions, study)
    rows = _rows(sessions)
    assert len(rows) == 4 and len({r.message_id for r in rows}) == 4
    assert "|C\r" in rows[2].payload["er7"] or "|C|" in rows[2].payload["er7"]


def test_outbox_and_publication_commit_together(
    sessions: sessionmaker[Session],
    tmp_path: Path,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_factory(delivery={"hl7": [{"name": "emr", "host": "127.0.0.1", "port": 9}]})
    study = seed(sessions, tmp_path)
    put_read_report(settings, sessions, study, "Kein Erguss.")

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("disk gone while queueing")

    monkeypatch.setattr(publish_stage, "enqueue_publication", broken)
    with pytest.raises(RuntimeError):
        _publish(settings, sessions, study)
    with sessions() as session:
        assert session.scalars(select(FhirResource)).first() is None  # no report without its messages
    assert _rows(sessions) == []


def test_order_numbers_reach_fhir_and_oru(
    sessions: sessionmaker[Session], tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(delivery={"hl7": [{"name": "emr", "host": "127.0.0.1", "port": 9}]})
    study = seed(sessions, tmp_path)
    with sessions.begin() as session:
        session.add(
            Order(
                accession_number="ACC-7",
                placer_number="PL-7",
                filler_number="FI-7",
                patient_id="PAT-7",
                requested_procedure="CT chest",
                order_control="NW",
                message_type="ORM^O01",
                visit={"patient_class": "E", "location": ["ER", "3"], "attending": ["D-5", "Invented"]},
            )
        )
    put_read_report(settings, sessions, study, "右肺上叶见结节（Se 2 Im 5）。")
    _publish(settings, sessions, study)
    with sessions() as session:
        [request] = session.scalars(
            select(FhirResource).where(
                FhirResource.resource_type == "ServiceRequest", FhirResource.is_current
            )
        ).all()
        report = session.scalars(
            select(FhirResource).where(
                FhirResource.resource_type == "DiagnosticReport", FhirResource.is_current
            )
        ).one()
    types = {i["type"]["coding"][0]["code"]: i["value"] for i in request.body["identifier"]}
    assert types == {"ACSN": "ACC-7", "PLAC": "PL-7", "FILL": "FI-7"}
    assert request.body["code"] == {"text": "CT chest"}
    assert report.body["basedOn"] == [{"reference": f"ServiceRequest/{request.resource_id}"}]
    [row] = _rows(sessions)
    obr = next(s for s in row.payload["er7"].split("\r") if s.startswith("OBR")).split("|")
    assert (obr[2], obr[3], obr[18]) == ("PL-7", "FI-7", "ACC-7")
    pv1 = next(s for s in row.payload["er7"].split("\r") if s.startswith("PV1")).split("|")
    assert (pv1[2], pv1[3], pv1[7]) == ("E", "ER^3", "D-5^Invented")
