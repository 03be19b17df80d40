"""Hostile peers before and during association: the SCP closes them quickly and keeps serving real senders.

Each case talks raw TCP to ``gateway.dicom.scp.Scp`` from 127.0.0.2 (another loopback address) while a
pynetdicom SCU from 127.0.0.1 stores real instances.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ATTACKER = "127.0.0.2"


@pytest.fixture
def index_url(sqlite_index_url: str) -> str:
    """Association handling does not depend on the index back end."""
    return sqlite_index_url


@pytest.fixture
def raw_sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        with contextlib.suppress(OSError):
            sock.close()


def connect_from(address: str, port: int, opened: list[socket.socket]) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((address, 0))
    sock.connect(("127.0.0.1", port))
    opened.append(sock)
    return sock


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True once the other side has closed the connection (EOF or reset) within ``timeout`` seconds."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return True
        if not data:
            return True
    return False


def store_one(port: int, ds: Dataset) -> int:
    ae = AE(ae_title="TEST-SCU")
    ae.acse_timeout = 5
    ae.dimse_timeout = 10
    ae.network_timeout = 10
    ae.add_requested_context(CT_IMAGE, ExplicitVRLittleEndian)
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="GATEWAY")
        if not assoc.is_established:
            return -1
        status = int(assoc.send_c_store(ds).Status)
        assoc.release()
        return status
    finally:
        ae.shutdown()


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def test_garbage_connections_are_closed_and_do_not_take_association_slots(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset], raw_sockets: list[socket.socket]
) -> None:
    scp = start_scp(dicom={"artim_timeout": 2.0, "max_associations": 16})
    attackers = []
    for _ in range(17):
        sock = connect_from(ATTACKER, scp.port, raw_sockets)
        with contextlib.suppress(OSError):
            sock.sendall(b"\xff" * 8)
        attackers.append(sock)
    time.sleep(0.3)
    # A real sender still gets an association and a Success while the garbage connections are open.
    assert store_one(scp.port, make_instance("ct")) == 0x0000
    # Each garbage connection is closed by the gateway within the ARTIM period (not left open for minutes).
    started = time.monotonic()
    for sock in attackers:
        assert closed_by_peer(sock, timeout=max(0.1, 6.0 - (time.monotonic() - started)))


def test_idle_connections_are_closed_after_artim(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset], raw_sockets: list[socket.socket]
) -> None:
    scp = start_scp(dicom={"artim_timeout": 1.0, "max_associations": 4})
    idle = [connect_from(ATTACKER, scp.port, raw_sockets) for _ in range(8)]
    # A partial PDU header keeps pynetdicom's reader blocked unless the gateway bounds it.
    for sock in idle[:4]:
        sock.sendall(b"\x01\x00")
    assert store_one(scp.port, make_instance("ct")) == 0x0000
    started = time.monotonic()
    for sock in idle:
        assert closed_by_peer(sock, timeout=max(0.1, 5.0 - (time.monotonic() - started)))


def test_pending_connections_per_address_are_bounded(
    start_scp: Callable[..., Any], raw_sockets: list[socket.socket]
) -> None:
    scp = start_scp(dicom={"artim_timeout": 30.0, "max_pending_per_address": 3})
    socks = [connect_from(ATTACKER, scp.port, raw_sockets) for _ in range(6)]
    time.sleep(0.5)
    closed = [closed_by_peer(sock, timeout=0.5) for sock in socks]
    assert closed.count(True) == 3, closed


def test_huge_associate_request_is_refused_without_buffering(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset], raw_sockets: list[socket.socket]
) -> None:
    scp = start_scp(dicom={"artim_timeout": 30.0})
    before = rss()
    chunk = b"\x00" * (1024 * 1024)
    refused = []
    for _ in range(2):
        sock = connect_from(ATTACKER, scp.port, raw_sockets)
        sock.settimeout(5.0)
        sent = 0
        try:
            sock.sendall(struct.pack(">BBL", 0x01, 0x00, 0xFFFFFFFF))
            while sent < 96 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            refused.append(sent)
        else:
            refused.append(-1)
    grown = rss() - before
    # The gateway closed the connection at the header: the sender could not push more than socket buffers.
    assert all(0 <= sent < 32 * 1024 * 1024 for sent in refused), refused
    assert grown < 48 * 1024 * 1024, grown
    assert store_one(scp.port, make_instance("ct")) == 0x0000


def test_pdata_larger_than_the_negotiated_maximum_is_aborted(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]
) -> None:
    scp = start_scp(dicom={"max_pdu_bytes": 65536})
    ae = AE(ae_title="TEST-SCU")
    ae.acse_timeout = 5
    ae.network_timeout = 10
    ae.add_requested_context(CT_IMAGE, ExplicitVRLittleEndian)
    try:
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="GATEWAY")
        assert assoc.is_established
        assert assoc.acceptor.maximum_length == 65536
        sock = assoc.dul.socket.socket
        assert sock is not None
        before = rss()
        sock.sendall(struct.pack(">BBL", 0x04, 0x00, 0x7FFFFFFF))
        with contextlib.suppress(OSError):
            for _ in range(64):
                sock.sendall(b"\x00" * (1024 * 1024))
        deadline = time.monotonic() + 5
        while not assoc.is_aborted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert assoc.is_aborted
        assert rss() - before < 48 * 1024 * 1024
    finally:
        ae.shutdown()
    assert store_one(scp.port, make_instance("ct")) == 0x0000


def _scu(port: int, *contexts: str) -> tuple[AE, Any]:
    ae = AE(ae_title="TEST-SCU")
    ae.acse_timeout = 5
    ae.dimse_timeout = 10
    ae.network_timeout = 10
    for context in contexts:
        ae.add_requested_context(context, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="GATEWAY")
    assert assoc.is_established
    return ae, assoc


@pytest.mark.parametrize("policy, expected", [("refuse", 0x0122), ("accept", 0x0000)])
def test_sr_data_set_on_a_ct_presentation_context_follows_the_policy(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset], policy: str, expected: int
) -> None:
    scp = start_scp(dicom={"context_mismatch": policy})
    ae, assoc = _scu(scp.port, CT_IMAGE)
    ct_context = assoc.accepted_contexts[0]
    assoc._get_valid_context = lambda *args, **kwargs: ct_context  # the SCU sends the SR on the CT context
    try:
        rsp = assoc.send_c_store(make_instance("sr"))
        assert int(rsp.Status) == expected
        assoc.release()
    finally:
        ae.shutdown()
    assert len(list(scp.settings.store_dir.rglob("*.dcm"))) == (1 if expected == 0 else 0)


def test_c_store_of_the_verification_sop_class_gets_a_c_store_refusal(
    start_scp: Callable[..., Any], make_instance: Callable[..., Dataset]
) -> None:
    scp = start_scp()
    ae, assoc = _scu(scp.port, "1.2.840.10008.1.1")
    ds = make_instance("ct")
    ds.SOPClassUID = "1.2.840.10008.1.1"
    try:
        rsp = assoc.send_c_store(ds)
        assert "Status" in rsp and int(rsp.Status) == 0x0122
        assoc.release()
    finally:
        ae.shutdown()
    assert not list(scp.settings.store_dir.rglob("*.dcm"))


@pytest.mark.dcmtk
def test_dcmtk_storescu_is_served_while_hostile_sockets_hold_connections(
    start_scp: Callable[..., Any],
    make_instance: Callable[..., Dataset],
    raw_sockets: list[socket.socket],
    dcmtk: dict[str, str],
    tmp_path: Path,
) -> None:
    """A real peer no one here wrote (DCMTK storescu) stores a study while garbage, idle and 4 GiB-header
    connections from another address hold sockets open: nothing it sends is refused or lost."""
    scp = start_scp(dicom={"artim_timeout": 20.0, "max_associations": 4, "max_pending_per_address": 4})
    for k in range(12):  # more than the pending limit per address: the extra ones are closed at once
        sock = connect_from(ATTACKER, scp.port, raw_sockets)
        with contextlib.suppress(OSError):
            if k % 3 == 0:
                sock.sendall(b"\xff" * 8)
            elif k % 3 == 1:
                sock.sendall(struct.pack(">BBL", 0x01, 0x00, 0xFFFFFFFF))
    time.sleep(0.3)
    folder = tmp_path / "outgoing"
    uids = []
    for i in range(6):
        ds = make_instance("ct", instance_number=i, path=folder / f"ct{i}.dcm")
        uids.append(str(ds.SOPInstanceUID))
    argv = ["storescu", "-aet", "DCMTK", "-aec", "GATEWAY", "-to", "10", "-ta", "10", "-td", "10"]
    sent = subprocess.run(
        [*argv, "--scan-directories", "127.0.0.1", str(scp.port), str(folder)],
        env=dcmtk,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sent.returncode == 0, sent.stderr
    assert "Store Failed" not in sent.stdout + sent.stderr
    kept = {p.stem for p in scp.settings.store_dir.rglob("*.dcm")}
    assert set(uids) <= kept
