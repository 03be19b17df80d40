"""Large instances and deflate bombs against a ``gateway scp`` process: its memory stays flat in the size.

The files are written as raw bytes (streamed, never held in memory) and sent with pynetdicom's chunked send,
so the only process whose memory matters here is the gateway's; its peak RSS (VmHWM) is read from /proc.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config

from gateway.dicom.part10 import PREAMBLE, file_meta

pytestmark = [pytest.mark.slow]

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MIB = 1024 * 1024


@pytest.fixture
def index_url(sqlite_index_url: str) -> str:
    return sqlite_index_url


def _el(tag: int, vr: bytes, value: bytes) -> bytes:
    group, element = tag >> 16, tag & 0xFFFF
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT"):
        return struct.pack("<HH2s2xI", group, element, vr, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _ui(uid: str) -> bytes:
    raw = uid.encode()
    return raw + b"\x00" if len(raw) % 2 else raw


def header_elements(sop_uid: str, study: str, series: str) -> bytes:
    """Explicit VR little endian elements of a small Secondary Capture, up to (not including) Pixel Data."""
    return b"".join(
        [
            _el(0x00080016, b"UI", _ui(SECONDARY_CAPTURE)),
            _el(0x00080018, b"UI", _ui(sop_uid)),
            _el(0x00080060, b"CS", b"OT"),
            _el(0x00100020, b"LO", b"BIG-1 "),
            _el(0x0020000D, b"UI", _ui(study)),
            _el(0x0020000E, b"UI", _ui(series)),
            _el(0x00280002, b"US", struct.pack("<H", 1)),
            _el(0x00280004, b"CS", b"MONOCHROME2 "),
            _el(0x00280010, b"US", struct.pack("<H", 1024)),
            _el(0x00280100, b"US", struct.pack("<H", 8)),
        ]
    )


def pixel_chunks(size: int) -> Iterator[bytes]:
    yield struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", size)
    block = bytes(range(256)) * (MIB // 256)
    left = size
    while left:
        yield block[: min(left, MIB)]
        left -= min(left, MIB)


def write_instance(path: Path, pixel_bytes: int, *, deflate: bool) -> str:
    sop = generate_uid()
    syntax = DeflatedExplicitVRLittleEndian if deflate else ExplicitVRLittleEndian
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with path.open("wb") as out:
        out.write(PREAMBLE + file_meta(SECONDARY_CAPTURE, sop, syntax))
        parts = [header_elements(sop, generate_uid(), generate_uid()), *pixel_chunks(pixel_bytes)]
        for part in parts:
            out.write(compressor.compress(part) if deflate else part)
        if deflate:
            out.write(compressor.flush())
    return sop


def send_file(port: int, path: Path, syntax: str) -> int:
    ae = AE(ae_title="TEST-SCU")
    ae.acse_timeout = 10
    ae.dimse_timeout = 120
    ae.network_timeout = 120
    ae.add_requested_context(SECONDARY_CAPTURE, syntax)
    old = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="GATEWAY")
        assert assoc.is_established
        rsp = assoc.send_c_store(path)
        status = int(rsp.Status) if "Status" in rsp else -1
        assoc.release()
        return status
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
        ae.shutdown()


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


@pytest.fixture
def gateway(gateway_process: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    env = gateway_process.env()
    env["GATEWAY_DICOM__MAX_INSTANCE_BYTES"] = str(256 * MIB)
    monkeypatch.setattr(gateway_process, "env", lambda: env)
    gateway_process.start()
    return gateway_process


def stored_files(gateway: Any) -> list[Path]:
    return [p for p in (gateway.data_dir / "instances").rglob("*") if p.is_file()]


def test_deflate_bomb_is_refused_not_stored(gateway: Any, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.dcm"
    write_instance(bomb, 512 * MIB, deflate=True)
    assert bomb.stat().st_size < 2 * MIB  # a few hundred KB that inflate to 512 MiB
    before = peak_rss(gateway.proc.pid)
    status = send_file(gateway.port, bomb, DeflatedExplicitVRLittleEndian)
    assert 0xA700 <= status <= 0xA7FF, hex(status)
    assert stored_files(gateway) == []
    assert peak_rss(gateway.proc.pid) - before < 96 * MIB


def test_deflated_instance_within_the_limit_is_stored(gateway: Any, tmp_path: Path) -> None:
    small = tmp_path / "small.dcm"
    write_instance(small, 4 * MIB, deflate=True)
    assert send_file(gateway.port, small, DeflatedExplicitVRLittleEndian) == 0x0000
    [stored] = stored_files(gateway)
    assert stored.read_bytes().endswith(small.read_bytes()[-4096:])


def test_large_instance_memory_is_flat_in_its_size(gateway: Any, tmp_path: Path) -> None:
    big = tmp_path / "big.dcm"
    write_instance(big, 200 * MIB, deflate=False)
    before = peak_rss(gateway.proc.pid)
    assert send_file(gateway.port, big, ExplicitVRLittleEndian) == 0x0000
    grown = peak_rss(gateway.proc.pid) - before
    [stored] = stored_files(gateway)
    assert stored.stat().st_size == big.stat().st_size
    print(f"gateway peak RSS grew by {grown / MIB:.1f} MiB for a 200 MiB instance")
    assert grown < 64 * MIB, grown / MIB
