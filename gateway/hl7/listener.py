"""The MLLP listener for orders and patient updates: reads framed messages on a kept-open connection,
stores each, and answers an ACK (HL7 v2.5.1 2.9, original mode).

AA: stored. AE: the message could not be parsed or stored (the sender may retry). AR: a message type this
listener does not accept. The ACK goes out only after the transaction committed.

With ``orders.tls.enabled`` every connection is TLS (1.2 or later), optionally with client certificates
verified against ``orders.tls.ca`` (``require_client_cert``); the handshake runs on the connection's own
thread, so a slow or failing sender holds up no one else.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import threading
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from gateway.delivery.settings import ListenerTls, OrdersListener
from gateway.hl7.errors import Hl7Error
from gateway.hl7.mllp import END, START, frame
from gateway.hl7.orders import UnsupportedMessage, build_ack, parse_inbound
from gateway.hl7.store import store_inbound

log = logging.getLogger(__name__)

_CHARSETS = {"UNICODE UTF-8": "utf-8", "8859/1": "latin-1", "ASCII": "ascii", "": "utf-8"}


def _decode(raw: bytes) -> str:
    head = raw.split(b"\r", 1)[0].split(b"|")
    charset = head[17].decode("ascii", "replace").strip() if len(head) > 17 else ""
    try:
        return raw.decode(_CHARSETS.get(charset, "utf-8"))
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def handle_message(sessions: sessionmaker[Session], raw: bytes) -> bytes:
    """One message in, one ACK out (bytes, unframed)."""
    text = _decode(raw)
    try:
        inbound = parse_inbound(text)
        with sessions.begin() as session:
            outcome = store_inbound(session, inbound)
    except UnsupportedMessage as exc:
        log.warning("HL7 message refused: %s", exc)
        return build_ack(text, "AR", str(exc)).encode("utf-8")
    except Hl7Error as exc:
        log.warning("HL7 message not understood: %s", exc)
        return build_ack(text, "AE", str(exc)).encode("utf-8")
    except Exception as exc:
        log.exception("HL7 message could not be stored")
        return build_ack(text, "AE", f"could not store: {type(exc).__name__}").encode("utf-8")
    log.info("HL7 %s stored: %s", inbound.message_type, outcome)
    return build_ack(text, "AA").encode("utf-8")


def server_context(tls: ListenerTls) -> ssl.SSLContext | None:
    """The server-side TLS context of the listener, or None when TLS is off."""
    if not tls.enabled:
        return None
    assert tls.cert is not None and tls.key is not None  # checked by ListenerTls
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(tls.cert), keyfile=str(tls.key))
    if tls.ca is not None:
        context.load_verify_locations(cafile=str(tls.ca))
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return context


class Hl7Listener:
    def __init__(self, settings: OrdersListener, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.sessions = sessions
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> None:
        listener = self
        context = server_context(self.settings.tls)

        class _Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                sock.settimeout(listener.settings.read_timeout)
                if context is not None:
                    try:
                        sock = context.wrap_socket(sock, server_side=True)
                    except (ssl.SSLError, OSError) as exc:
                        log.warning("HL7 order connection refused: TLS handshake failed: %s", exc)
                        return
                buffer = b""
                while True:
                    try:
                        chunk = sock.recv(65536)
                    except (TimeoutError, OSError):
                        return
                    if not chunk:
                        return
                    buffer += chunk
                    while END in buffer:
                        raw, _, buffer = buffer.partition(END)
                        start = raw.find(START)
                        if start < 0:
                            continue
                        sock.sendall(frame(handle_message(listener.sessions, raw[start + 1 :])))

        class _Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        server: Any = _Server((self.settings.bind, self.settings.port), _Handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="hl7-listener", daemon=True
        )
        self._thread.start()
        log.info(
            "HL7 order listener",
            extra={"bind": self.settings.bind, "port": self.port, "tls": context is not None},
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
