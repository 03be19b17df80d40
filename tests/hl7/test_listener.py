"""The order listener, fed by python-hl7's asyncio MLLP client (playing the RIS/EMR order sender)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import hl7
import hl7.mllp
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.delivery.settings import OrdersListener
from gateway.fhir.ids import patient_id
from gateway.fhir.store import current, save_resources
from gateway.fhir.validate import validate_resource
from gateway.hl7.listener import Hl7Listener
from gateway.hl7.orders import parse_inbound
from gateway.index.models import Order, Patient, PatientMerge


def _obr(**fields: str) -> str:
    values = [""] * 25
    values[0] = "OBR"
    for key, value in fields.items():
        values[int(key[1:])] = value
    return "|".join(values)


ORM = "\r".join(
    [
        "MSH|^~\\&|RIS|HOSP|GATEWAY|RAD|20261201040000||ORM^O01|CTRL1|P|2.3.1",
        "PID|1||PAT-9^^^HOSP^MR||Invented^Person||19800101|F",
        "ORC|NW|PL-9^RIS|FI-9^PACS",
        _obr(f1="1", f2="PL-9", f3="FI-9", f4="CTCHEST^CT chest^L", f18="ACC-9", f19="RP-9", f24="CT"),
        "ZDS|1.2.3.4.5^100^Application^DICOM",
    ]
)
OMI = "\r".join(
    [
        "MSH|^~\\&|RIS|HOSP|GATEWAY|RAD|20261201040000||OMI^O23^OMI_O23|CTRL2|P|2.5.1|||||UNICODE UTF-8",
        "PID|1||PAT-10^^^HOSP^MR||测试^患者",
        "ORC|NW|PL-10|FI-10",
        "TQ1|1",
        _obr(f1="1", f2="PL-10", f3="FI-10", f4="MRHEAD^头部磁共振^L"),
        "IPC|ACC-10|RP-10|1.2.3.9|SPS-1|MR",
    ]
)


def test_parse_orm_and_omi() -> None:
    orm = parse_inbound(ORM).order
    assert orm is not None
    assert (orm.placer_number, orm.filler_number, orm.accession_number) == ("PL-9", "FI-9", "ACC-9")
    assert (orm.requested_procedure_id, orm.requested_procedure, orm.modality) == ("RP-9", "CT chest", "CT")
    assert orm.study_instance_uid == "1.2.3.4.5" and orm.patient.issuer == "HOSP"
    omi = parse_inbound(OMI).order
    assert omi is not None
    assert (omi.accession_number, omi.requested_procedure_id, omi.study_instance_uid, omi.modality) == (
        "ACC-10",
        "RP-10",
        "1.2.3.9",
        "MR",
    )
    assert omi.requested_procedure == "头部磁共振"


@pytest.fixture
def listener(sessions: sessionmaker[Session]) -> Iterator[Hl7Listener]:
    server = Hl7Listener(OrdersListener(enabled=True, port=0), sessions)
    server.start()
    yield server
    server.stop()


def _send(port: int, *messages: str) -> list[hl7.Message]:
    async def run() -> list[hl7.Message]:
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, encoding="utf-8")
        acks = []
        for message in messages:  # one connection, several messages
            writer.writemessage(hl7.parse(message))
            await writer.drain()
            acks.append(await asyncio.wait_for(reader.readmessage(), 10))
        writer.close()
        return acks

    return asyncio.run(run())


def test_orders_stored_and_acknowledged(listener: Hl7Listener, sessions: sessionmaker[Session]) -> None:
    acks = _send(listener.port, ORM, OMI)
    assert [(str(a.segment("MSA")(1)), str(a.segment("MSA")(2))) for a in acks] == [
        ("AA", "CTRL1"),
        ("AA", "CTRL2"),
    ]
    with sessions() as session:
        orders = session.scalars(select(Order).order_by(Order.id)).all()
        assert [(o.accession_number, o.placer_number, o.filler_number, o.modality) for o in orders] == [
            ("ACC-9", "PL-9", "FI-9", "CT"),
            ("ACC-10", "PL-10", "FI-10", "MR"),
        ]
        assert orders[1].requested_procedure == "头部磁共振"
    cancel = ORM.replace("ORC|NW", "ORC|CA").replace("CTRL1", "CTRL3")
    [ack] = _send(listener.port, cancel)
    assert str(ack.segment("MSA")(1)) == "AA"
    with sessions() as session:
        order = session.scalars(select(Order).where(Order.accession_number == "ACC-9")).one()
        assert order.order_control == "CA"


def test_errors_answered(listener: Hl7Listener) -> None:
    oru = ORM.replace("ORM^O01", "ORU^R01").replace("CTRL1", "BAD1")
    no_pid = "\r".join(line for line in ORM.split("\r") if not line.startswith("PID")).replace(
        "CTRL1", "BAD2"
    )
    acks = _send(listener.port, oru, no_pid)
    assert [str(a.segment("MSA")(1)) for a in acks] == ["AR", "AE"]
    assert "ORU^R01" in acks[0].unescape(str(acks[0].segment("MSA")(3)))  # escaped on the wire
    assert "PID-3" in str(acks[1].segment("MSA")(3))


def test_adt_update_and_merge(listener: Hl7Listener, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.add(Patient(patient_id="NEW-1", issuer="HOSP", name="Old^Name"))
        save_resources(
            session,
            [
                {"resourceType": "Patient", "id": patient_id(pid, "HOSP"), "identifier": [{"value": pid}]}
                for pid in ("OLD-1", "NEW-1")
            ],
            study_fk=None,
        )
    _send(listener.port, ORM.replace("PAT-9", "OLD-1"))
    a08 = "\r".join(
        [
            "MSH|^~\\&|ADT|HOSP|GATEWAY|RAD|20261201||ADT^A08^ADT_A01|C4|P|2.5.1",
            "EVN|A08|20261201",
            "PID|1||NEW-1^^^HOSP^MR||New^Name||19700101|M",
            "PV1|1|O",
        ]
    )
    a40 = "\r".join(
        [
            "MSH|^~\\&|ADT|HOSP|GATEWAY|RAD|20261201||ADT^A40^ADT_A39|C5|P|2.5.1",
            "EVN|A40|20261201",
            "PID|1||NEW-1^^^HOSP^MR||New^Name",
            "MRG|OLD-1^^^HOSP^MR",
        ]
    )
    acks = _send(listener.port, a08, a40)
    assert [str(a.segment("MSA")(1)) for a in acks] == ["AA", "AA"]
    with sessions() as session:
        patient = session.scalars(select(Patient).where(Patient.patient_id == "NEW-1")).one()
        assert (patient.name, patient.birth_date, patient.sex) == ("New^Name", "19700101", "M")
        merge = session.scalars(select(PatientMerge)).one()
        assert (merge.prior_patient_id, merge.patient_id) == ("OLD-1", "NEW-1")
        assert session.scalars(select(Order)).one().patient_id == "NEW-1"  # the order follows the merge
        old = current(session, "Patient", patient_id("OLD-1", "HOSP"))
        new = current(session, "Patient", patient_id("NEW-1", "HOSP"))
        assert old is not None and new is not None
        assert old.body["active"] is False and old.version_id == 2
        assert old.body["link"] == [
            {"other": {"reference": f"Patient/{new.resource_id}"}, "type": "replaced-by"}
        ]
        assert new.body["link"] == [
            {"other": {"reference": f"Patient/{old.resource_id}"}, "type": "replaces"}
        ]
        validate_resource(old.body)
        validate_resource(new.body)


def _send_tls(port: int, context: ssl.SSLContext | None, message: str) -> hl7.Message:
    async def run() -> hl7.Message:
        reader, writer = await hl7.mllp.open_hl7_connection(
            "127.0.0.1", port, encoding="utf-8", ssl=context, server_hostname="localhost" if context else None
        )
        try:
            writer.writemessage(hl7.parse(message))
            await writer.drain()
            return await asyncio.wait_for(reader.readmessage(), 10)
        finally:
            writer.close()

    return asyncio.run(run())


def _client_context(pki: Path, with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if with_cert:
        context.load_cert_chain(pki / "client.crt", pki / "client.key")
    return context


def test_orders_over_tls(sessions: sessionmaker[Session], pki: Path) -> None:
    tls = {"enabled": True, "cert": pki / "server.crt", "key": pki / "server.key"}
    server = Hl7Listener(OrdersListener(enabled=True, port=0, tls=tls), sessions)  # type: ignore[arg-type]
    server.start()
    try:
        ack = _send_tls(server.port, _client_context(pki, with_cert=False), ORM)
        assert (str(ack.segment("MSA")(1)), str(ack.segment("MSA")(2))) == ("AA", "CTRL1")
        # A plain-TCP sender gets no ACK: the listener speaks only TLS.
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError, TimeoutError)):
            _send_tls(server.port, None, OMI)
    finally:
        server.stop()
    with sessions() as session:
        assert [o.accession_number for o in session.scalars(select(Order))] == ["ACC-9"]


def test_orders_tls_with_required_client_certificate(sessions: sessionmaker[Session], pki: Path) -> None:
    tls = {
        "enabled": True,
        "cert": pki / "server.crt",
        "key": pki / "server.key",
        "ca": pki / "ca.crt",
        "require_client_cert": True,
    }
    server = Hl7Listener(OrdersListener(enabled=True, port=0, tls=tls), sessions)  # type: ignore[arg-type]
    server.start()
    try:
        ack = _send_tls(server.port, _client_context(pki, with_cert=True), ORM)
        assert str(ack.segment("MSA")(1)) == "AA"
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, TimeoutError)):
            _send_tls(server.port, _client_context(pki, with_cert=False), OMI)
    finally:
        server.stop()


def test_orders_tls_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="cert and key"):
        OrdersListener(tls={"enabled": True})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="require_client_cert needs ca"):
        OrdersListener(tls={"enabled": True, "cert": "a", "key": "b", "require_client_cert": True})  # type: ignore[arg-type]


def test_visit_from_the_order_and_a_later_adt(listener: Hl7Listener, sessions: sessionmaker[Session]) -> None:
    orm = ORM.replace(
        "ORC|NW|PL-9^RIS|FI-9^PACS",
        "PV1|1|I|W3^12^A^HOSP||||D-1^Attending^First||||||||||||V-100\rORC|NW|PL-9^RIS|FI-9^PACS",
    )
    [ack] = _send(listener.port, orm)
    assert str(ack.segment("MSA")(1)) == "AA"
    with sessions() as session:
        order = session.scalars(select(Order)).one()
        assert order.visit == {
            "patient_class": "I",
            "location": ["W3", "12", "A", "HOSP"],
            "attending": ["D-1", "Attending", "First"],
            "visit_number": "V-100",
        }
    adt = "\r".join(
        [
            "MSH|^~\\&|ADT|HOSP|GATEWAY|RAD|20261201050000||ADT^A08|CTRL9|P|2.5.1",
            "EVN|A08|20261201050000",
            "PID|1||PAT-9^^^HOSP^MR||Invented^Person||19800101|F",
            "PV1|1|O|CT^1^^HOSP||||D-2^Other^Second",
        ]
    )
    [ack] = _send(listener.port, adt)
    assert str(ack.segment("MSA")(1)) == "AA"
    with sessions() as session:
        assert session.scalars(select(Order)).one().visit == {
            "patient_class": "O",
            "location": ["CT", "1", "", "HOSP"],
            "attending": ["D-2", "Other", "Second"],
        }
