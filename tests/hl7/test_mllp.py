"""The MLLP client and the ORU sender against python-hl7's asyncio MLLP server (a real peer)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from hl7_peer import Hl7Peer, Received, check_oru
from publication import publication

from gateway.delivery.errors import DeliveryError, PermanentDeliveryError
from gateway.delivery.oru import OruSender, options
from gateway.delivery.settings import Hl7Destination
from gateway.hl7.mllp import MllpClient, MllpEndpoint, MllpError
from gateway.hl7.oru import build_oru


def _dest(port: int, **extra: object) -> Hl7Destination:
    return Hl7Destination.model_validate({"name": "emr", "host": "127.0.0.1", "port": port, **extra})


def _payload(dest: Hl7Destination, mid: str) -> dict[str, object]:
    return {"er7": build_oru(publication(), options(dest, mid)), "charset": dest.charset}


def test_accepted_over_one_connection(peer: Hl7Peer) -> None:
    peer.answer = lambda item: (check_oru(item), ("AA", ""))[1]
    dest = _dest(peer.port)
    sender = OruSender([dest])
    try:
        for n in range(3):
            sender.send("emr", f"MID{n}", _payload(dest, f"MID{n}"))
    finally:
        sender.close()
    assert peer.ids == ["MID0", "MID1", "MID2"]
    assert peer.errors == []
    assert peer.connections == 1  # one connection per destination, kept open
    obx = peer.received[0].parsed.segments("OBX")
    assert str(obx[0](5)) == "右肺上叶见结节（Se 2 Im 5）。"  # UTF-8 on the wire, as MSH-18 says


def test_application_error_is_retryable_with_reason(peer: Hl7Peer) -> None:
    peer.answer = lambda item: ("AE", "unknown patient")
    dest = _dest(peer.port)
    sender = OruSender([dest])
    with pytest.raises(DeliveryError, match="AE: unknown patient") as info:
        sender.send("emr", "M1", _payload(dest, "M1"))
    assert not isinstance(info.value, PermanentDeliveryError)
    sender.close()


def test_reject_is_permanent(peer: Hl7Peer) -> None:
    peer.answer = lambda item: ("AR", "unsupported message type")
    dest = _dest(peer.port)
    sender = OruSender([dest])
    with pytest.raises(PermanentDeliveryError, match="AR: unsupported message type"):
        sender.send("emr", "M1", _payload(dest, "M1"))
    sender.close()


def test_checks_fail_on_bad_message(peer: Hl7Peer) -> None:
    """The peer's own checks run: a message lacking OBX comes back AE with the reason."""

    def strict(item: Received) -> tuple[str, str]:
        check_oru(item)
        return "AA", ""

    peer.answer = strict
    client = MllpClient(MllpEndpoint("127.0.0.1", peer.port))
    er7 = "MSH|^~\\&|GW||||20260101||ORU^R01^ORU_R01|X1|P|2.5.1\rPID|1||P1\rOBR|1|||x" + "|" * 21 + "F"
    ack = client.exchange(er7.encode(), "X1", "ascii")
    client.close()
    assert ack.code == "AE" and "no OBX" in ack.text


def test_timeout_and_refused() -> None:
    slow = Hl7Peer(delay=2.0).start()
    try:
        client = MllpClient(MllpEndpoint("127.0.0.1", slow.port, ack_timeout=0.3))
        er7 = build_oru(publication(), options(_dest(slow.port), "T1"))
        with pytest.raises(MllpError, match="no ACK within"):
            client.exchange(er7.encode(), "T1", "utf-8")
    finally:
        slow.stop()
    closed = MllpClient(MllpEndpoint("127.0.0.1", slow.port, connect_timeout=1))
    with pytest.raises(MllpError, match="cannot connect"):
        closed.exchange(b"MSH|^~\\&|", "x", "ascii")


def test_tls(pki: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    secure = Hl7Peer(tls=context).start()
    try:
        dest = _dest(secure.port, tls={"enabled": True, "ca": str(pki / "ca.crt")})
        sender = OruSender([dest])
        sender.send("emr", "S1", _payload(dest, "S1"))
        sender.close()
        assert secure.ids == ["S1"]
        untrusted = OruSender([_dest(secure.port, tls={"enabled": True})])  # system CAs only
        with pytest.raises(DeliveryError, match="TLS handshake"):
            untrusted.send("emr", "S2", _payload(dest, "S2"))
    finally:
        secure.stop()
