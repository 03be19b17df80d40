"""MLLP client (HL7 v2 Minimal Lower Layer Protocol, HL7 v2.5.1 appendix C.4): one open connection per
destination, one message in flight, the ACK read back and matched on MSA-2.

``0x0B <message> 0x1C 0x0D``. The connection stays open between messages and is dropped and reopened after
any error, so a half-read ACK never answers the next message.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from gateway.hl7.ack import Ack, parse_ack
from gateway.hl7.errors import Hl7Error

START, END = b"\x0b", b"\x1c\x0d"


def frame(message: bytes) -> bytes:
    return START + message + END


class MllpError(Hl7Error):
    """The MLLP connection failed, timed out, or answered something that is not our ACK."""


@dataclass(frozen=True)
class MllpEndpoint:
    host: str
    port: int
    connect_timeout: float = 10.0
    ack_timeout: float = 30.0
    tls: bool = False
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_hostname: str | None = None


class MllpClient:
    """A persistent MLLP connection to one receiver. Not thread-safe: one caller at a time."""

    def __init__(self, endpoint: MllpEndpoint) -> None:
        self.endpoint = endpoint
        self._sock: socket.socket | None = None
        self._buffer = b""

    def _connect(self) -> socket.socket:
        ep = self.endpoint
        try:
            sock = socket.create_connection((ep.host, ep.port), timeout=ep.connect_timeout)
        except OSError as exc:
            raise MllpError(f"cannot connect to {ep.host}:{ep.port}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ep.tls:
            context = ssl.create_default_context(cafile=str(ep.ca) if ep.ca else None)
            if ep.cert is not None and ep.key is not None:
                context.load_cert_chain(str(ep.cert), str(ep.key))
            try:
                sock = context.wrap_socket(sock, server_hostname=ep.server_hostname or ep.host)
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise MllpError(f"TLS handshake with {ep.host}:{ep.port} failed: {exc}") from exc
        self._buffer = b""
        return sock

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._buffer = b""

    def _read_frame(self, sock: socket.socket) -> bytes:
        sock.settimeout(self.endpoint.ack_timeout)
        while END not in self._buffer:
            try:
                chunk = sock.recv(65536)
            except TimeoutError as exc:
                raise MllpError(f"no ACK within {self.endpoint.ack_timeout:g} s") from exc
            if not chunk:
                raise MllpError("the receiver closed the connection before acknowledging")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(END)
        start = raw.find(START)
        if start < 0:
            raise MllpError("a reply without the MLLP start block")
        return raw[start + 1 :]

    def exchange(self, message: bytes, message_id: str, encoding: str) -> Ack:
        """Send one framed message and return its ACK. Any failure closes the connection."""
        try:
            if self._sock is None:
                self._sock = self._connect()
            self._sock.sendall(frame(message))
            reply = self._read_frame(self._sock)
            ack = parse_ack(reply.decode(encoding, errors="replace"))
        except (OSError, Hl7Error) as exc:
            self.close()
            if isinstance(exc, MllpError):
                raise
            raise MllpError(
                f"MLLP exchange with {self.endpoint.host}:{self.endpoint.port} failed: {exc}"
            ) from exc
        if ack.message_id != message_id:
            self.close()
            raise MllpError(f"ACK for {ack.message_id!r} while waiting for {message_id!r}")
        return ack
